// Package logfixture builds large served logs for benchmarks and scale
// tests: N signed DSSE provenance documents appended in-process through
// logserver.Server.Add (the same derivation, signature check, Tessera POSIX
// appender, index follower and proof verification as `stepseal log serve`,
// with large batches), into a directory that `stepseal log serve` then
// opens unchanged. Document i is the same bytes every time for one signing
// key (Ed25519 signatures are deterministic), so a checker regenerates it to
// know what each search must answer.
package logfixture
