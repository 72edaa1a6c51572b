// Package publishtest makes the files the stepseal-publish Task reads, for
// tests: a publisher key pair (cosign-encrypted, with its password file), a
// platform's decryption key, and a platform policy signed by an owner key,
// named as the Task's defaults name them, so one fixture serves the CLI's
// tests, the catalog's static tests and the real-node test.
package publishtest
