// Package compat holds Ferry's compatibility stories: the real binaries against an API server
// whose CRDs are shaped as Velero 1.18 installs them (no status subresource, no selectable
// fields).
package compat

import (
	"testing"

	"github.com/ferry-backup/ferry/internal/repository/repotest"
	"github.com/ferry-backup/ferry/internal/testenv"
	"github.com/ferry-backup/ferry/test/harness"
)

func TestMain(m *testing.M) {
	testenv.RunWith(m, testenv.Options{VeleroCRDs: true}, repotest.Stop, harness.Stop)
}
