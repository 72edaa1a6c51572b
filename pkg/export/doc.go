// Package export writes a run's signed documents into a directory in the
// form GUAC's file collector ingests (`guacone collect files DIR`): one
// file per document, each a DSSE envelope of an in-toto statement (GUAC's
// DSSE and ITE6 guessers; SLSA provenance goes to its SLSA parser) or a
// Sigstore bundle (GUAC's bundle guesser is sigstore-go's own parser).
// in-toto links and layouts (Metablocks) are left out and reported: GUAC
// has no parser for them and its collector would fail on them.
package export
