// Command bench provides Ferry's performance benchmark: it generates a reproducible dataset and
// backs it up, backs it up again unchanged and after a 1% change, and restores it, with Ferry's
// uploader, the kopia CLI and restic, printing wall time, throughput and peak RSS per tool and
// operation and one summary line of throughput ratios.
//
// Every operation runs in a child process of its own, so that its peak RSS is the child's
// ru_maxrss; Ferry's operations re-execute this binary with the hidden -ferry-op flag. Run it
// with `make bench` or `go run ./test/bench -scale small`; docs/performance.md explains what is
// measured.
package main
