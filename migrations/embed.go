// Package migrations holds Mutuo's numbered SQL migrations, embedded in the
// binary and applied with goose at start-up and by `mutuo migrate`.
package migrations

import "embed"

// FS holds the *.sql migrations.
//
//go:embed *.sql
var FS embed.FS
