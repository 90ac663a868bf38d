package cpapi

import (
	"net/http"
	"time"

	"git.omukk.dev/wrenn/sandbox/internal/cphttp"
	"git.omukk.dev/wrenn/sandbox/pkg/db"
	"git.omukk.dev/wrenn/sandbox/pkg/id"
)

// invitationView is an invitation as its team's managers see it.
type invitationView struct {
	ID        string    `json:"id"`
	TeamID    string    `json:"team_id"`
	Email     string    `json:"email"`
	Role      string    `json:"role"`
	InvitedBy *string   `json:"invited_by"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

func viewInvitation(i db.TeamInvitation) invitationView {
	return invitationView{ID: id.Format(id.Invitation, i.ID), TeamID: id.Format(id.Team, i.TeamID), Email: i.Email, Role: i.Role,
		InvitedBy: optID(id.User, i.InvitedBy), CreatedAt: i.CreatedAt, ExpiresAt: i.ExpiresAt}
}

// receivedInvitationView is an invitation as its invitee sees it.
type receivedInvitationView struct {
	ID        string    `json:"id"`
	TeamID    string    `json:"team_id"`
	TeamName  string    `json:"team_name"`
	Role      string    `json:"role"`
	InvitedBy string    `json:"invited_by_email"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

func (a *API) invite(w http.ResponseWriter, r *http.Request) {
	t, ok := teamParam(w, r, "team.invite")
	if !ok {
		return
	}
	var b struct {
		Email string `json:"email"`
		Role  string `json:"role,omitempty"`
	}
	if !a.decode(w, r, &b) {
		return
	}
	inv, err := a.svc.Invite(r.Context(), caller(r), t, b.Email, b.Role)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	setAudit(r.Context(), "team.invite", "invitation", id.Format(id.Invitation, inv.ID))
	writeJSON(w, http.StatusCreated, viewInvitation(inv))
}

func (a *API) listTeamInvitations(w http.ResponseWriter, r *http.Request) {
	t, ok := pathID(w, r, "teamID", id.Team)
	if !ok {
		return
	}
	invs, err := a.svc.ListTeamInvitations(r.Context(), caller(r), t)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, mapSlice(invs, viewInvitation))
}

func (a *API) revokeInvitation(w http.ResponseWriter, r *http.Request) {
	t, ok := teamParam(w, r, "team.revoke_invitation")
	if !ok {
		return
	}
	inv, ok := pathID(w, r, "invitationID", id.Invitation)
	if !ok {
		return
	}
	setAudit(r.Context(), "team.revoke_invitation", "invitation", id.Format(id.Invitation, inv))
	if err := a.svc.RevokeInvitation(r.Context(), caller(r), t, inv); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) myInvitations(w http.ResponseWriter, r *http.Request) {
	invs, err := a.svc.MyInvitations(r.Context(), caller(r))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, mapSlice(invs, func(i db.ListInvitationsForEmailRow) receivedInvitationView {
		return receivedInvitationView{ID: id.Format(id.Invitation, i.ID), TeamID: id.Format(id.Team, i.TeamID), TeamName: i.TeamName, Role: i.Role,
			InvitedBy: i.InvitedByEmail, CreatedAt: i.CreatedAt, ExpiresAt: i.ExpiresAt}
	}))
}

func (a *API) acceptInvitation(w http.ResponseWriter, r *http.Request) {
	a.answerInvitation(w, r, true)
}
func (a *API) declineInvitation(w http.ResponseWriter, r *http.Request) {
	a.answerInvitation(w, r, false)
}

// answerInvitation accepts or declines; either is audited under the
// inviting team, which sees who joined or declined.
func (a *API) answerInvitation(w http.ResponseWriter, r *http.Request, accept bool) {
	inv, ok := pathID(w, r, "invitationID", id.Invitation)
	if !ok {
		return
	}
	action := "invitation.decline"
	if accept {
		action = "invitation.accept"
	}
	setAudit(r.Context(), action, "invitation", id.Format(id.Invitation, inv))
	got, err := a.svc.AnswerInvitation(r.Context(), caller(r), inv, accept)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	cphttp.TeamOnSuccess(r.Context(), got.TeamID)
	if !accept {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	team, role, err := a.svc.GetTeam(r.Context(), caller(r), got.TeamID)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, viewTeam(team, role))
}
