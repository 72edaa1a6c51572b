// Package rejecttest checks, in tests, that an error speaks stepseal's
// shared vocabulary of rejections (pkg/reject): the reason a verifier's
// error documents, under that reason's root only — a refusal is never also
// "could not check", and the other way round.
package rejecttest
