// Package repository provides Ferry's Kopia repositories: one per BackupStorageLocation (or per
// location and namespace), on a filesystem or an S3-compatible store, created on first use and
// connected to afterwards, with maintenance, password changes and an exclusive-operation lock.
//
// It is the only package that imports Kopia's repo and blob packages. It hands out Kopia's own
// repository type; there is no wrapper interface in between.
package repository
