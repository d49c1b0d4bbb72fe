import { LabIcon } from '@jupyterlab/ui-components';

/** "A − B": the compare action. */
export const compareIcon = new LabIcon({
  name: 'nopdb-lab:compare',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><g class="jp-icon3" fill="#616161">' +
    '<path d="M3 4h8v16H3zM5 6v12h4V6z"/><path d="M13 4h8v16h-8z" opacity=".45"/>' +
    '<path d="M14 11h6v2h-6z" fill="#fff"/></g></svg>'
});

/** A `.nopdb` capture bundle in the file browser. */
export const bundleIcon = new LabIcon({
  name: 'nopdb-lab:bundle',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><g class="jp-icon-accent1" fill="#e65100">' +
    '<path d="M4 6l8-4 8 4v12l-8 4-8-4zm2 1.3v9.5l6 3 6-3V7.3l-6 3z"/>' +
    '<path d="M11 11.5h2v8h-2z"/></g></svg>'
});
