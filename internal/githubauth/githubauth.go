// Package githubauth signs users in with GitHub: the OAuth 2.0
// authorization-code flow with state and PKCE against GitHub's documented
// endpoints, and the two API calls sign-in needs (the user and their
// emails). Both bases are configurable, for GitHub Enterprise and for
// tests, which run a local server that answers as GitHub does.
package githubauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"golang.org/x/oauth2"
)

// Scopes sign-in asks for: the profile, and the email addresses (to link
// an existing account by its verified primary email).
var Scopes = []string{"read:user", "user:email"}

// Client talks to one GitHub.
type Client struct {
	oauth *oauth2.Config
	api   string
	http  *http.Client
}

// New returns a client of the OAuth app clientID on the GitHub at webURL
// (https://github.com) whose REST API is at apiURL (https://api.github.com).
func New(clientID, clientSecret, webURL, apiURL string) *Client {
	return &Client{
		oauth: &oauth2.Config{
			ClientID: clientID, ClientSecret: clientSecret, Scopes: Scopes,
			Endpoint: oauth2.Endpoint{
				AuthURL:  webURL + "/login/oauth/authorize",
				TokenURL: webURL + "/login/oauth/access_token",
				// GitHub documents the credentials as form parameters.
				AuthStyle: oauth2.AuthStyleInParams,
			},
		},
		api:  apiURL,
		http: &http.Client{Timeout: 15 * time.Second},
	}
}

// NewVerifier returns a fresh PKCE code verifier.
func NewVerifier() string { return oauth2.GenerateVerifier() }

// AuthCodeURL is where the browser goes to consent: GitHub sends it back
// to redirectURI with the code and state.
func (c *Client) AuthCodeURL(state, verifier, redirectURI string) string {
	cfg := *c.oauth
	cfg.RedirectURL = redirectURI
	return cfg.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier))
}

// ErrCode is an authorization code GitHub refused: wrong, used or expired.
var ErrCode = errors.New("the authorization code is wrong or expired")

// Exchange trades an authorization code for an access token.
func (c *Client) Exchange(ctx context.Context, code, verifier, redirectURI string) (string, error) {
	cfg := *c.oauth
	cfg.RedirectURL = redirectURI
	tok, err := cfg.Exchange(context.WithValue(ctx, oauth2.HTTPClient, c.http), code, oauth2.VerifierOption(verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.ErrorCode == "bad_verification_code" {
			return "", ErrCode
		}
		if errors.As(err, &re) && re.ErrorCode != "" {
			return "", fmt.Errorf("GitHub refused the code: %s", re.ErrorCode)
		}
		return "", fmt.Errorf("GitHub token exchange: %w", err)
	}
	return tok.AccessToken, nil
}

// Identity is what GitHub says about the signed-in user.
type Identity struct {
	ID    string // GitHub's numeric user ID, which never changes
	Login string
	Name  string
	// Email is the primary email when GitHub has verified it, else empty.
	Email string
}

type user struct {
	ID    int64  `json:"id"`
	Login string `json:"login"`
	Name  string `json:"name"`
}

type email struct {
	Email    string `json:"email"`
	Primary  bool   `json:"primary"`
	Verified bool   `json:"verified"`
}

// Identity reads the user and their emails with an access token.
func (c *Client) Identity(ctx context.Context, token string) (Identity, error) {
	var u user
	if err := c.get(ctx, token, "/user", &u); err != nil {
		return Identity{}, err
	}
	if u.ID == 0 || u.Login == "" {
		return Identity{}, errors.New("GitHub's /user answer has no id or login")
	}
	var emails []email
	if err := c.get(ctx, token, "/user/emails", &emails); err != nil {
		return Identity{}, err
	}
	id := Identity{ID: strconv.FormatInt(u.ID, 10), Login: u.Login, Name: u.Name}
	for _, e := range emails {
		if e.Primary && e.Verified {
			id.Email = e.Email
		}
	}
	return id, nil
}

func (c *Client) get(ctx context.Context, token, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, "GET", c.api+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
	res, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("GitHub %s: %w", path, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("GitHub %s: %w", path, err)
	}
	if res.StatusCode != http.StatusOK {
		var e struct{ Message string }
		_ = json.Unmarshal(body, &e)
		return fmt.Errorf("GitHub %s: %s %s", path, res.Status, e.Message)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("GitHub %s: %w", path, err)
	}
	return nil
}
