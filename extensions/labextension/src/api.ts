/**
 * Calls to the server extension's REST API (/hubforge/api/...) through JupyterLab's
 * ServerConnection, which adds the XSRF header and the server's token.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

export class HubforgeError extends Error {
  constructor(
    message: string,
    readonly status: number
  ) {
    super(message);
  }
}

const settings = ServerConnection.makeSettings();

/** The server's base URL (ends with '/'): links to TensorBoards and files start here. */
export const baseUrl = settings.baseUrl;

export async function request<T>(
  path: string,
  init: RequestInit = {},
  query: Record<string, string> = {}
): Promise<T> {
  let url = URLExt.join(settings.baseUrl, 'hubforge', 'api', path);
  const search = new URLSearchParams(query).toString();
  if (search) {
    url += `?${search}`;
  }
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new HubforgeError(`Your server did not answer: ${error}`, 0);
  }
  const text = await response.text();
  let body: any = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (!response.ok) {
    const message = body?.message || body?.reason || response.statusText;
    throw new HubforgeError(message, response.status);
  }
  return body as T;
}

export function postJSON<T>(path: string, body: unknown): Promise<T> {
  return request<T>(path, { method: 'POST', body: JSON.stringify(body) });
}

export function remove<T>(path: string): Promise<T> {
  return request<T>(path, { method: 'DELETE' });
}
