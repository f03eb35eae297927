// Package uploader provides backups of a directory into a Kopia repository and restores of a
// snapshot into a directory: incremental against the previous snapshot of the same source,
// parallel, cancellable, with throttled progress and resumable checkpoints.
//
// It is the only package that imports Kopia's snapshot and fs packages.
package uploader
