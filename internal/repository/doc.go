// Package repository provides Ferry's Kopia repositories: one per BackupStorageLocation (or per
// location and namespace), on a filesystem or an S3-compatible store, created on first use and
// connected to afterwards, with maintenance, password changes and an exclusive-operation lock.
//
// The exclusive-operation lock (full maintenance, password changes) needs no compare-and-swap
// from the store. Each acquisition writes its own uniquely named claim, waits a settle delay,
// lists the claims and wins only when its own is the only unexpired one (lock.go). It requires
// that the store list a blob in every listing that starts at least the settle delay (2s) after
// the blob's write returned, until the blob is deleted, and that overwriting a blob never hides
// it: S3, versitygw and a local filesystem do so at once. It assumes that clocks differ by at
// most 30s between nodes; clocks only decide when a claim has expired.
//
// It is the only package that imports Kopia's repo and blob packages. It hands out Kopia's own
// repository type; there is no wrapper interface in between.
package repository
