// Package architecture provides the import rules of ARCHITECTURE.md as a test: it reads the
// import graph with `go list` and fails on an upward import, on Kopia outside the repository
// and uploader packages, on controllers importing each other, and on a CLI that links Kopia.
package architecture
