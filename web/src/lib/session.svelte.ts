// Who is signed in, as the whole app sees it. The session itself is an
// HttpOnly cookie; this holds the account it belongs to and hands the
// CSRF token to the API client.
import { auth, setCsrf, teams, type Me, type ReceivedInvitation, type Team } from './api';

// How often the invitations waiting for the user are asked for again as
// they move between pages.
const invitationsEvery = 15_000;

class Session {
  me = $state<Me | null>(null);
  loaded = $state(false);
  /** Invitations to teams waiting for the user to accept or decline. */
  invitations = $state<ReceivedInvitation[]>([]);
  #invitationsAt = 0;

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
    this.invitations = [];
    this.#invitationsAt = 0;
  }

  /** switchTeam makes a team the active one; the answer is the account with it. */
  async switchTeam(id: string) {
    this.me = await auth.switchTeam(id);
  }

  /** loadInvitations asks for the user's invitations, unless it did so just now (force: always). */
  async loadInvitations(force = false) {
    if (!this.me || (!force && Date.now() - this.#invitationsAt < invitationsEvery)) return;
    this.#invitationsAt = Date.now();
    this.invitations = await teams.received();
  }

  /** accept joins the invitation's team; the active team stays as it is. */
  async accept(inv: ReceivedInvitation) {
    await teams.accept(inv.id);
    this.invitations = this.invitations.filter((i) => i.id !== inv.id);
    await this.reloadMe();
  }

  async decline(inv: ReceivedInvitation) {
    await teams.decline(inv.id);
    this.invitations = this.invitations.filter((i) => i.id !== inv.id);
  }
}

export const session = new Session();
