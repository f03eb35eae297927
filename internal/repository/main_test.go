package repository_test

import (
	"testing"

	"github.com/ferry-backup/ferry/internal/repository/repotest"
)

func TestMain(m *testing.M) { repotest.Run(m) }
