// Package buildinfo provides the version of the running Ferry binary.
package buildinfo

import "runtime/debug"

// Version is set at link time (-X github.com/ferry-backup/ferry/internal/buildinfo.Version=v1.2.3);
// otherwise it is read from the module's build information.
var Version = ""

// String returns the version, or "dev" for an untagged build.
func String() string {
	if Version != "" {
		return Version
	}
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" && info.Main.Version != "(devel)" {
		return info.Main.Version
	}
	return "dev"
}
