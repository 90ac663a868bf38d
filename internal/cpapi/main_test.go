package cpapi_test

import (
	"fmt"
	"os"
	"testing"

	"git.omukk.dev/wrenn/sandbox/internal/cptest"
)

var pg *cptest.Postgres

func TestMain(m *testing.M) {
	var err error
	if pg, err = cptest.StartPostgres(); err != nil {
		fmt.Fprintln(os.Stderr, "start PostgreSQL for the control plane tests:", err)
		os.Exit(1)
	}
	code := m.Run()
	pg.Stop()
	os.Exit(code)
}
