// Package migrations embeds the control plane's goose migrations so that
// the binary applies them at start without files beside it.
package migrations

import "embed"

// FS holds every migration, applied in file-name order.
//
//go:embed *.sql
var FS embed.FS
