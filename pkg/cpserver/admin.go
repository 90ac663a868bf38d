package cpserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"git.omukk.dev/wrenn/sandbox/pkg/config"
	"git.omukk.dev/wrenn/sandbox/pkg/db"
	"git.omukk.dev/wrenn/sandbox/pkg/service"
)

// CreateAdmin makes a platform admin in cfg's database (migrating it
// first): the way the first admin of an installation is made, from the
// host, since signing up never makes one. An existing account with that
// email is made an admin with its password unchanged. It reports whether
// the account was created.
func CreateAdmin(ctx context.Context, cfg config.Config, email, password, name string, log *slog.Logger) (db.User, bool, error) {
	if cfg.DatabaseURL == "" {
		return db.User{}, false, fmt.Errorf("no database: set database_url in the configuration file (--config) or WRENN_DATABASE_URL")
	}
	pool, err := pgxpool.New(ctx, cfg.DatabaseURL)
	if err != nil {
		return db.User{}, false, fmt.Errorf("database: %w", err)
	}
	defer pool.Close()
	if err := Migrate(ctx, pool, log); err != nil {
		return db.User{}, false, err
	}
	return service.New(pool, nil, cfg, log).CreateAdmin(ctx, email, password, name)
}

// AdminCommand is `control-plane create-admin`: it reads the database from
// the configuration (--config or WRENN_CP_CONFIG, then WRENN_DATABASE_URL;
// nothing else of it need be set, TLS included) and creates or promotes
// the admin named by --email. Without --password-file a password is
// generated and printed once.
func AdminCommand(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("create-admin", flag.ContinueOnError)
	fs.SetOutput(out)
	file := fs.String("config", os.Getenv(config.ConfigEnv), "TOML configuration file (or "+config.ConfigEnv+"); only its database is used")
	email := fs.String("email", "", "the admin's email (required)")
	name := fs.String("name", "", "display name (default: the email's local part)")
	pwFile := fs.String("password-file", "", "file holding the password (default: generate one and print it)")
	fs.Usage = func() {
		fmt.Fprintln(out, "usage: control-plane create-admin [--config FILE] --email ADDRESS [--name NAME] [--password-file FILE]")
		fmt.Fprintln(out, "Creates a platform admin in the configured database, or makes an existing account one.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *email == "" || fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("--email is required and nothing else is taken")
	}
	cfg, err := config.Load(*file)
	if err != nil {
		return err
	}
	password, generated := "", false
	if *pwFile != "" {
		b, err := os.ReadFile(*pwFile)
		if err != nil {
			return fmt.Errorf("password file: %w", err)
		}
		password = strings.TrimRight(string(b), "\r\n")
	} else {
		b := make([]byte, 12)
		rand.Read(b)
		password, generated = hex.EncodeToString(b), true
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	u, created, err := CreateAdmin(ctx, cfg, *email, password, *name, log)
	if err != nil {
		return err
	}
	switch {
	case !created:
		fmt.Fprintf(out, "%s is now a platform admin (existing account; password unchanged)\n", u.Email)
	case generated:
		fmt.Fprintf(out, "created platform admin %s with password %s\n", u.Email, password)
	default:
		fmt.Fprintf(out, "created platform admin %s\n", u.Email)
	}
	return nil
}
