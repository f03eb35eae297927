// Package cluster holds Ferry's cluster-level stories: the real binaries against a real API
// server, with several simulated nodes.
package cluster

import (
	"testing"

	"github.com/ferry-backup/ferry/internal/repository/repotest"
	"github.com/ferry-backup/ferry/internal/testenv"
	"github.com/ferry-backup/ferry/test/harness"
)

func TestMain(m *testing.M) {
	testenv.RunWith(m, testenv.Options{SnapshotAPI: true}, repotest.Stop, harness.Stop)
}
