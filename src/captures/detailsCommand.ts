/** The command that opens a capture's details in the main area (see detailsInMain.ts). */
export const OPEN_DETAILS_IN_MAIN = 'nopdb-lab:open-details-in-main';
