// Who is signed in, as the whole app sees it. The session itself is an
// HttpOnly cookie; this holds the account it belongs to and hands the
// CSRF token to the API client.
import { auth, setCsrf, type Me, type Team } from './api';

class Session {
  me = $state<Me | null>(null);
  loaded = $state(false);

  get user() {
    return this.me?.user ?? null;
  }
  get admin() {
    return this.me?.user.admin ?? false;
  }
  get team(): Team | null {
    const m = this.me;
    return m?.teams.find((t) => t.id === m.active_team_id) ?? null;
  }
  get canManageTeam() {
    const r = this.team?.role;
    return r === 'owner' || r === 'admin';
  }

  /** refresh asks the control plane whether the cookie holds a session. */
  async refresh() {
    const s = await auth.session();
    setCsrf(s.csrf_token ?? '');
    this.me = s.authenticated ? (s.me ?? null) : null;
    this.loaded = true;
  }

  async reloadMe() {
    this.me = await auth.me();
  }

  /** signedOut forgets the account after the server ended the session. */
  signedOut() {
    setCsrf('');
    this.me = null;
  }

  async switchTeam(id: string) {
    await auth.switchTeam(id);
    await this.reloadMe();
  }
}

export const session = new Session();
