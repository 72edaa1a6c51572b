// Package awslog opens a served log on Tessera's AWS driver
// (github.com/transparency-dev/tessera/storage/aws): entries sequenced in a
// MySQL-compatible database, tiles and checkpoints in an S3-compatible
// bucket, so that several `stepseal log serve` replicas append to one log
// with no shared volume. Only images/stepseal-tekton links it: the lean
// stepseal binary must not link the AWS SDK.
package awslog
