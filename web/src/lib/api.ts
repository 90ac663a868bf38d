// The one client of Wrenn's /v1 API. Pages call these functions and never
// fetch on their own. The browser's session lives in an HttpOnly cookie the
// page cannot read; every request carries the session's CSRF token, which
// GET /v1/auth/session hands over.

export type SandboxState = 'creating' | 'running' | 'pausing' | 'paused' | 'resuming' | 'stopping' | 'stopped' | 'error';

export interface User {
  id: string;
  email: string;
  name: string;
  admin: boolean;
  active: boolean;
  created_at: string;
}

export interface Team {
  id: string;
  name: string;
  role?: 'owner' | 'admin' | 'member' | '';
  created_at: string;
}

export interface Me {
  user: User;
  teams: Team[];
  active_team_id: string | null;
  has_password: boolean;
  github: { login: string; connected_at: string } | null;
}

export interface BrowserSession {
  authenticated: boolean;
  csrf_token?: string;
  me?: Me;
}

export interface Providers {
  password: boolean;
  signup: boolean;
  github: boolean;
}

export interface Sandbox {
  id: string;
  team_id: string;
  template: string;
  snapshot_id: string | null;
  state: SandboxState;
  vcpus: number;
  memory_mib: number;
  disk_mib: number;
  timeout_seconds: number;
  on_timeout: 'destroy' | 'pause';
  allow_internet: boolean;
  allow_public_traffic: boolean;
  auto_resume: boolean;
  metadata: Record<string, string>;
  env_var_names: string[];
  envd_version: string;
  host_id: string | null;
  host_status: string;
  error?: string;
  created_at: string;
  expires_at: string | null;
  stopped_at: string | null;
}

export interface CreateSandbox {
  template?: string;
  snapshot_id?: string;
  vcpus?: number;
  memory_mib?: number;
  disk_mib?: number;
  timeout_seconds?: number;
  on_timeout?: 'destroy' | 'pause';
  allow_internet?: boolean;
  auto_resume?: boolean;
  metadata?: Record<string, string>;
  env_vars?: Record<string, string>;
}

export interface Template {
  name: string;
  built_in: boolean;
  team_id: string;
}

export interface Snapshot {
  id: string;
  name: string;
  team_id: string;
  host_id: string | null;
  source_sandbox_id: string | null;
  template: string;
  vcpus: number;
  memory_mib: number;
  disk_mib: number;
  size_bytes: number;
  status: 'creating' | 'ready' | 'error';
  created_at: string;
}

export interface ApiKey {
  id: string;
  name: string;
  prefix: string;
  team_id: string;
  created_by: string | null;
  created_at: string;
  last_used_at: string | null;
  revoked_at: string | null;
  key?: string;
}

export interface Member {
  user_id: string;
  email: string;
  name: string;
  role: 'owner' | 'admin' | 'member';
  joined_at: string;
}

/** A pending invitation, as the team's owners and admins see it. */
export interface Invitation {
  id: string;
  team_id: string;
  email: string;
  role: Member['role'];
  invited_by: string | null;
  created_at: string;
  expires_at: string;
}

/** A pending invitation, as the person invited sees it. */
export interface ReceivedInvitation {
  id: string;
  team_id: string;
  team_name: string;
  role: Member['role'];
  invited_by_email: string;
  created_at: string;
  expires_at: string;
}

export interface Host {
  id: string;
  name: string;
  address: string;
  status: 'pending' | 'ready' | 'draining' | 'unreachable';
  runtime: string;
  accelerator: string;
  cpus: number;
  memory_mib: number;
  disk_free_mib: number;
  max_sandboxes: number;
  sandboxes: number;
  committed_vcpus: number;
  committed_memory_mib: number;
  templates: string[];
  unknown_sandboxes: string[];
  last_heartbeat_at: string | null;
  created_at: string;
}

export interface HostToken {
  token: string;
  expires_at: string;
}

export interface AuditEntry {
  id: string;
  team_id: string | null;
  actor_type: string;
  actor_id: string;
  action: string;
  resource_type: string;
  resource_id: string;
  result: 'ok' | 'error';
  status: number;
  ip: string;
  created_at: string;
}

export interface AuditFilter {
  action?: string;
  actor_id?: string;
  resource_type?: string;
  resource_id?: string;
  result?: '' | 'ok' | 'error';
  after?: string;
  before?: string;
  limit?: number;
}

export interface FileEntry {
  name: string;
  path: string;
  is_dir: boolean;
  size: number;
  permissions: string;
  modified_at: string;
}

export interface Metric {
  timestamp_unix_ms: number;
  cpu_used_pct: number;
  cpu_count: number;
  mem_used_bytes: number;
  mem_total_bytes: number;
  disk_used_bytes: number;
  disk_total_bytes: number;
  host_rss_bytes: number;
}

export interface Metrics {
  latest: Metric;
  recent: Metric[];
}

export interface Port {
  port: number;
  address: string;
  url?: string;
}

/** An error the API answered with ({code, message}), or a network failure. */
export class ApiError extends Error {
  constructor(
    public status: number,
    public code: string,
    message: string
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** isAbort tells a request the caller cancelled from a failure. */
export function isAbort(e: unknown): boolean {
  return e instanceof DOMException && e.name === 'AbortError';
}

let csrf = '';
let onUnauthorized: (() => void) | null = null;

/** setSession stores the CSRF token of the browser's session. */
export function setCsrf(token: string) {
  csrf = token;
}

/** whenUnauthorized registers what to do when the session has ended. */
export function whenUnauthorized(f: () => void) {
  onUnauthorized = f;
}

type Query = Record<string, string | number | boolean | undefined | null | string[]>;

function url(path: string, query?: Query): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query ?? {})) {
    if (v === undefined || v === null || v === '') continue;
    if (Array.isArray(v)) v.forEach((x) => q.append(k, x));
    else q.set(k, String(v));
  }
  const s = q.toString();
  return '/v1' + path + (s ? '?' + s : '');
}

function headers(json: boolean): Record<string, string> {
  const h: Record<string, string> = { Accept: 'application/json' };
  if (json) h['Content-Type'] = 'application/json';
  if (csrf) h['X-CSRF-Token'] = csrf;
  return h;
}

async function failure(res: Response): Promise<ApiError> {
  let code = 'http_' + res.status;
  let message = res.statusText || 'request failed';
  try {
    const body = await res.json();
    if (body && typeof body.message === 'string') {
      code = body.code ?? code;
      message = body.message;
    }
  } catch {
    // not JSON: keep the status text
  }
  if (res.status === 401 && onUnauthorized) onUnauthorized();
  return new ApiError(res.status, code, message);
}

async function request<T>(method: string, path: string, opts: { body?: unknown; query?: Query; signal?: AbortSignal } = {}): Promise<T> {
  let res: Response;
  try {
    res = await fetch(url(path, opts.query), {
      method,
      headers: headers(opts.body !== undefined),
      body: opts.body !== undefined ? JSON.stringify(opts.body) : undefined,
      credentials: 'same-origin',
      signal: opts.signal
    });
  } catch (e) {
    if (isAbort(e)) throw e;
    throw new ApiError(0, 'network', 'The control plane did not answer. Check your connection and try again.');
  }
  if (!res.ok) throw await failure(res);
  if (res.status === 204) return undefined as T;
  return (await res.json()) as T;
}

const get = <T>(path: string, query?: Query, signal?: AbortSignal) => request<T>('GET', path, { query, signal });
const post = <T>(path: string, body?: unknown) => request<T>('POST', path, { body });
const patch = <T>(path: string, body?: unknown) => request<T>('PATCH', path, { body });
const del = (path: string, query?: Query) => request<void>('DELETE', path, { query });
const enc = encodeURIComponent;

// Accounts and sessions

export const auth = {
  providers: () => get<Providers>('/auth/providers'),
  session: () => get<BrowserSession>('/auth/session'),
  signIn: (email: string, password: string) =>
    post<{ user: User; csrf_token: string }>('/auth/login', { email, password, session: 'cookie' }),
  signUp: (email: string, password: string, name: string) =>
    post<{ user: User; csrf_token: string }>('/auth/signup', { email, password, name: name || undefined, session: 'cookie' }),
  signOut: () => post<void>('/auth/logout'),
  completeGitHub: () => post<{ csrf_token: string }>('/auth/github/exchange'),
  gitHubSignInURL: '/v1/auth/github/login',
  connectGitHub: () => post<{ url: string }>('/auth/github/link'),
  disconnectGitHub: () => del('/auth/github'),
  me: () => get<Me>('/auth/me'),
  updateProfile: (name: string) => patch<User>('/auth/me', { name }),
  changePassword: (current_password: string, new_password: string) => post<void>('/auth/password', { current_password, new_password }),
  /** switchTeam makes a team the active one (remembered for later sign-ins) and answers with the account. */
  switchTeam: (team_id: string) => post<Me>('/auth/switch-team', { team_id })
};

// Teams and members. Membership goes through these calls only: people join
// a team by an invitation to their email, which they accept or decline.

export const teams = {
  list: () => get<Team[]>('/teams'),
  create: (name: string) => post<Team>('/teams', { name }),
  rename: (team: string, name: string) => patch<Team>(`/teams/${enc(team)}`, { name }),
  remove: (team: string) => del(`/teams/${enc(team)}`),
  members: (team: string) => get<Member[]>(`/teams/${enc(team)}/members`),
  setRole: (team: string, user: string, role: Member['role']) => patch<void>(`/teams/${enc(team)}/members/${enc(user)}`, { role }),
  removeMember: (team: string, user: string) => del(`/teams/${enc(team)}/members/${enc(user)}`),
  /** The team's pending invitations (owners and admins). */
  invitations: (team: string) => get<Invitation[]>(`/teams/${enc(team)}/invitations`),
  invite: (team: string, email: string, role: Member['role']) => post<Invitation>(`/teams/${enc(team)}/invitations`, { email, role }),
  cancelInvitation: (team: string, invitation: string) => del(`/teams/${enc(team)}/invitations/${enc(invitation)}`),
  /** The invitations waiting for the signed-in user. */
  received: () => get<ReceivedInvitation[]>('/invitations'),
  accept: (invitation: string) => post<Team>(`/invitations/${enc(invitation)}/accept`),
  decline: (invitation: string) => post<void>(`/invitations/${enc(invitation)}/decline`)
};

export const keys = {
  list: () => get<ApiKey[]>('/api-keys'),
  create: (name: string) => post<ApiKey>('/api-keys', { name }),
  revoke: (id: string) => del(`/api-keys/${enc(id)}`)
};

// Sandboxes

export const sandboxes = {
  list: (q: { state?: string; include_stopped?: boolean; metadata?: string[] } = {}, signal?: AbortSignal) =>
    get<Sandbox[]>('/sandboxes', { ...q, limit: 1000 }, signal),
  get: (id: string, signal?: AbortSignal) => get<Sandbox>(`/sandboxes/${enc(id)}`, undefined, signal),
  create: (body: CreateSandbox) => post<Sandbox>('/sandboxes', body),
  destroy: (id: string) => del(`/sandboxes/${enc(id)}`),
  pause: (id: string) => post<Sandbox>(`/sandboxes/${enc(id)}/pause`),
  resume: (id: string) => post<Sandbox>(`/sandboxes/${enc(id)}/resume`),
  setTimeout: (id: string, timeout_seconds: number) => post<Sandbox>(`/sandboxes/${enc(id)}/timeout`, { timeout_seconds }),
  metrics: (id: string, signal?: AbortSignal) => get<Metrics>(`/sandboxes/${enc(id)}/metrics`, undefined, signal),
  ports: (id: string, signal?: AbortSignal) => get<Port[]>(`/sandboxes/${enc(id)}/ports`, undefined, signal),
  templates: () => get<Template[]>('/templates')
};

export const snapshots = {
  list: () => get<Snapshot[]>('/snapshots'),
  create: (sandbox_id: string, name: string) => post<Snapshot>('/snapshots', { sandbox_id, name }),
  remove: (id: string) => del(`/snapshots/${enc(id)}`)
};

// Files in a sandbox. Reads take an AbortSignal: the caller cancels them
// when the user moves on, and a cancelled read rejects with an AbortError
// (isAbort), never an ApiError.

export const files = {
  list: (sandbox: string, path: string, signal?: AbortSignal) =>
    get<FileEntry[]>(`/sandboxes/${enc(sandbox)}/files/list`, { path }, signal),
  mkdir: (sandbox: string, path: string) => request<FileEntry>('POST', `/sandboxes/${enc(sandbox)}/files/mkdir`, { query: { path } }),
  remove: (sandbox: string, path: string) => del(`/sandboxes/${enc(sandbox)}/files`, { path }),
  move: (sandbox: string, from: string, to: string) => post<FileEntry>(`/sandboxes/${enc(sandbox)}/files/move`, { from, to }),

  /** read downloads a file, reporting progress, up to limit bytes (refused beyond). */
  async read(sandbox: string, path: string, opts: { signal?: AbortSignal; limit?: number; onProgress?: (done: number) => void } = {}): Promise<Blob> {
    let res: Response;
    try {
      res = await fetch(url(`/sandboxes/${enc(sandbox)}/files`, { path }), {
        headers: headers(false),
        credentials: 'same-origin',
        signal: opts.signal
      });
    } catch (e) {
      if (isAbort(e)) throw e;
      throw new ApiError(0, 'network', 'The control plane did not answer.');
    }
    if (!res.ok) throw await failure(res);
    const reader = res.body!.getReader();
    const parts: Uint8Array[] = [];
    let done = 0;
    for (;;) {
      const { value, done: end } = await reader.read();
      if (end) break;
      parts.push(value);
      done += value.length;
      opts.onProgress?.(done);
      if (opts.limit && done > opts.limit) {
        await reader.cancel();
        throw new ApiError(413, 'too_large', `The file is larger than ${opts.limit} bytes`);
      }
    }
    return new Blob(parts as BlobPart[]);
  },

  /** write uploads a file with progress (XMLHttpRequest: fetch reports none). */
  write(sandbox: string, path: string, data: Blob, opts: { signal?: AbortSignal; onProgress?: (sent: number, total: number) => void } = {}) {
    return new Promise<{ path: string; size: number }>((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open('PUT', url(`/sandboxes/${enc(sandbox)}/files`, { path }));
      xhr.setRequestHeader('Content-Type', 'application/octet-stream');
      if (csrf) xhr.setRequestHeader('X-CSRF-Token', csrf);
      xhr.upload.onprogress = (e) => opts.onProgress?.(e.loaded, e.total || data.size);
      xhr.onload = () => {
        let body: { code?: string; message?: string; path?: string; size?: number } = {};
        try {
          body = JSON.parse(xhr.responseText);
        } catch {
          // keep empty
        }
        if (xhr.status >= 200 && xhr.status < 300) resolve(body as { path: string; size: number });
        else {
          if (xhr.status === 401) onUnauthorized?.();
          reject(new ApiError(xhr.status, body.code ?? 'http_' + xhr.status, body.message ?? xhr.statusText));
        }
      };
      xhr.onerror = () => reject(new ApiError(0, 'network', 'The upload was cut off: the control plane did not answer.'));
      xhr.onabort = () => reject(new DOMException('upload cancelled', 'AbortError'));
      opts.signal?.addEventListener('abort', () => xhr.abort(), { once: true });
      xhr.send(data);
    });
  }
};

/** ptyURL is the WebSocket URL of a terminal (pid reattaches to one and has its latest output replayed). */
export function ptyURL(sandbox: string, o: { cols: number; rows: number; pid?: number }): string {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const q = new URLSearchParams({ cols: String(o.cols), rows: String(o.rows), csrf });
  if (o.pid) {
    q.set('pid', String(o.pid));
    q.set('replay', 'true');
  }
  return `${scheme}//${location.host}/v1/ws/sandboxes/${enc(sandbox)}/pty?${q}`;
}

// Platform: hosts, audit, admin

export const hosts = {
  list: () => get<Host[]>('/hosts'),
  createToken: () => post<HostToken>('/hosts/tokens'),
  drain: (id: string) => post<Host>(`/hosts/${enc(id)}/drain`),
  remove: (id: string, force = false) => del(`/hosts/${enc(id)}`, { force: force || undefined })
};

export const audit = {
  list: (f: AuditFilter, all = false) => get<AuditEntry[]>(all ? '/admin/audit' : '/audit', { ...f } as Query)
};

export const admin = {
  users: () => get<User[]>('/admin/users'),
  setActive: (id: string, active: boolean) => post<User>(`/admin/users/${enc(id)}/${active ? 'activate' : 'deactivate'}`),
  teams: () => get<Team[]>('/admin/teams'),
  sandboxes: (include_stopped = false) => get<Sandbox[]>('/admin/sandboxes', { include_stopped, limit: 1000 })
};
