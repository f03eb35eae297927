// Package faults3 provides a fault-injecting HTTP reverse proxy for tests: it listens on
// 127.0.0.1 in front of a real S3 server and, per request, forwards it, or drops it (holds the
// connection without answering until the client gives up), delays it, resets the connection,
// answers with an S3 error (500, 503) or refuses uploads as a full bucket does. Faults are
// switched at run time and scoped by method, object key prefix, every Nth match and after the
// first N matches; counters say what was seen and what was injected.
package faults3
