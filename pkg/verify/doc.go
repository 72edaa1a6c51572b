// Package verify is stepseal's in-toto verification engine: a signed layout,
// the owners' keys and a set of link files go in, a Verdict naming every
// failure comes out (Layout). Its verdict equals in-toto-golang's
// InTotoVerify on the same files, except where it is deliberately stricter
// (listed below); it is tested against in-toto-golang in-process on a corpus
// of good, attacked and randomly mutated supply chains.
//
// Every failure is a typed error whose category callers test with
// errors.Is (ErrLayoutSignature, ErrExpired, ErrSignature, ErrUnauthorized,
// ErrThreshold, ErrMissingStep, ErrUnknownStep, ErrDisagreement,
// ErrRunMismatch, ErrStepFailed, ErrNoReturnValue, ErrArtifactRule, ErrOutputArtifact, ErrMalformed,
// ErrUnsupported, all under ErrVerification) and whose message names the
// step, key (key ID prefix), artifact and rule involved.
//
// Links come from a LinkSource: a directory (Dir, as `in-toto verify`
// reads them), memory, or any store.Store (StoreLinks: one run's links, as
// the controller and `stepseal run` stored them). A verdict binds the
// artifacts the caller names (Options.Artifacts); verifying without one is
// refused (ErrNoArtifact) unless asked for with Options.WithoutArtifactUnsafe.
//
// It is fast because each link is parsed once by a strict single-pass JSON
// reader that also writes the canonical JSON the signature covers (tested
// byte for byte against securesystemslib's cjson), links are parsed and
// their signatures verified in parallel, and artifact rules run on sorted
// slices with fast paths for literal and "prefix/**" patterns, keeping
// in-toto-golang's glob semantics for every other pattern.
//
// # Deliberate differences from in-toto-golang
//
// Where in-toto-golang v0.11.0's InTotoVerify accepts and this package
// rejects (it never accepts what in-toto-golang rejects):
//
//   - Run binding: all links must carry the same stepseal.dev/run-id in
//     their environment (or equal Options.RunID), so a link replayed from
//     another run is rejected (ErrRunMismatch). Links that carry no run ID at
//     all are accepted with a warning (links made by `in-toto-golang run`).
//   - Every link file must count: in-toto-golang ignores link files it cannot
//     load, that are signed by keys the step does not authorize, whose
//     signature does not verify, or whose file name matches no step, as long
//     as each step's threshold is still met. Here each of these is a failure
//     (ErrMalformed, ErrUnauthorized, ErrSignature, ErrUnknownStep).
//   - The step name inside a link must equal the step its file name names:
//     in-toto-golang never reads the signed name, so a link signed for one
//     step can stand in for another step the same key may perform
//     (ErrUnknownStep).
//   - Declared output artifacts (Options.Artifacts) must equal the product of
//     the last step that produced them (ErrOutputArtifact); in-toto-golang
//     has no such input.
//   - Strict JSON: duplicate keys, keys differing from the schema only in
//     case, and unknown keys are rejected (ErrMalformed). encoding/json, which
//     in-toto-golang uses, takes the last duplicate, matches keys
//     case-insensitively and ignores unknown keys outside "signed"; since
//     in-toto-golang verifies the signature over the re-encoded struct, such
//     edits do not break its signature check. Also rejected: invalid UTF-8,
//     nesting deeper than 256, null where a digest set, string or array of
//     strings is expected, empty or non-hex digests, and files over
//     MaxFileSize (64 MiB).
//   - Refused features (ErrUnsupported): inspections (in-toto-golang runs
//     their commands during verification; stepseal never executes anything
//     while verifying, and the layouts it generates have none), sublayouts,
//     root/intermediate CAs, cert_constraints and certificate signatures,
//     and DSSE-wrapped layouts or links.
//   - Layout checks in-toto-golang skips: a step threshold below 1 (which
//     makes in-toto-golang panic when the step has no valid link), duplicate
//     or empty step names, a step _type other than "step", a layout key whose
//     key ID does not match the key or whose scheme is not the default for
//     its type, and malformed rules anywhere in the layout (in-toto-golang
//     only notices a malformed rule when it reaches it).
//   - Artifact names that path.Clean changes are cleaned once when the link
//     is read, and two names of one link that clean to the same path are
//     rejected (ErrMalformed). in-toto-golang cleans them lazily inside MATCH
//     rules (in map iteration order), so its MODIFY rule can miss a modified
//     "./x" and colliding names are resolved at random.
//   - A failed step fails verification: a link whose command ran must record
//     its exit status as an integer byproduct "return-value" (as in-toto-run
//     does) and it must be 0 (ErrStepFailed; missing or not an integer is
//     ErrNoReturnValue). in-toto-golang ignores byproducts, so a link
//     recording a failed build passes it. A layout lets named steps fail —
//     Tekton's `onError: continue` — with a readme line
//     "stepseal.dev/on-error-continue: <step>" (the readme is signed with the
//     layout and ignored by in-toto-golang, so such a layout still verifies
//     there); a step a timeout killed (byproduct stepseal.dev/timed-out) fails
//     even then, as it does in Tekton. A link of no command (in-toto-record)
//     has no outcome to check.
//   - Options.LayoutThreshold lets N of the given owner keys suffice;
//     in-toto-golang always requires every key given.
//   - Skip records (byproduct "stepseal.dev/skip"; see skip.go) stand in
//     for the links of a task Tekton skipped only when the layout's signed
//     readme declares the task skippable ("stepseal.dev/skippable: <json>",
//     attest.SkipRule), the record is signed by a key the rule lists, every
//     step of the task has one, the task has no link of a run, and its
//     reason holds (when expressions the layout's and false on the recorded
//     inputs; a cascade parent the rule names that was itself excused);
//     a task that ran although a cascading skip was claimed is refused, and
//     a key the layout lists only for skip records may sign nothing else
//     (ErrSkip, ErrUnauthorized). in-toto-golang sees skip records as links
//     by an authorized key, so it accepts all of these forgeries as long as
//     their artifacts match; one skip record meets a threshold above 1 here,
//     not there.
package verify
