/**
 * Asks nopdb-lab's jupyter-server extension how this server's copy of nopdb-lab was
 * installed, so the panel can tell a user the exact command that installs the same copy
 * into a kernel's environment.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** What `GET /nopdb-lab/info` returns. */
export interface IServerInfo {
  version: string;
  protocol: number;
  /** A `%pip install ...` line for a notebook cell. */
  install_command: string;
}

/** The install command used when the server extension cannot be reached. */
export const DEFAULT_INSTALL_COMMAND = '%pip install nopdb-lab';

/** Fetch the server extension's info; rejects with a message naming the status. */
export async function fetchServerInfo(
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<IServerInfo> {
  const url = URLExt.join(settings.baseUrl, 'nopdb-lab', 'info');
  const response = await ServerConnection.makeRequest(url, {}, settings);
  if (!response.ok) {
    throw new Error(
      `GET ${url} answered ${response.status} ${response.statusText}`
    );
  }
  return (await response.json()) as IServerInfo;
}
