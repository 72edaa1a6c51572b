package awslog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/transparency-dev/tessera/api/layout"
	tessaws "github.com/transparency-dev/tessera/storage/aws"

	"github.com/stepseal/stepseal/pkg/logserver"
	"github.com/stepseal/stepseal/pkg/tlog"
)

// MinCheckpointInterval is the AWS driver's least time between two
// checkpoints: an append waits up to this long for the one covering it.
const MinCheckpointInterval = time.Second

// maxObject bounds one object read: a full tile is 8 KiB, a full entry
// bundle at most 256 entries of 64 KiB.
const maxObject = 256*(2+tlog.MaxEntrySize) + 1

// Open returns the storage of cfg for logserver.Options.Storage: Tessera's
// AWS driver (sequencing in the database, integration into the bucket),
// with claims (claims.go) in the same database so that a document two
// replicas receive at once is appended once. S3 credentials come from the
// SDK's usual sources (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, shared
// files, ...). Open checks that the database answers and the bucket exists.
func Open(ctx context.Context, cfg logserver.AWSConfig) (*tlog.Storage, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	region := cfg.Region
	if region == "" {
		region = "us-east-1"
	}
	sdk, err := config.LoadDefaultConfig(ctx, config.WithRegion(region),
		// S3-compatible servers do not all compute the checksums AWS's
		// SDK now sends by default.
		config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
		config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired))
	if err != nil {
		return nil, fmt.Errorf("aws storage: SDK configuration: %w", err)
	}
	s3opts := func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = cfg.PathStyle
	}
	client := s3.NewFromConfig(sdk, s3opts)
	if _, err := client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(cfg.Bucket)}); err != nil {
		return nil, fmt.Errorf("%w: aws storage: S3 bucket %s: %w", logserver.ErrUnavailable, cfg.Bucket, err)
	}
	driver, err := tessaws.New(ctx, tessaws.Config{SDKConfig: &sdk, S3Options: s3opts, Bucket: cfg.Bucket, BucketPrefix: cfg.Prefix,
		DSN: cfg.DSN, MaxOpenConns: 16, MaxIdleConns: 4})
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", logserver.ErrUnavailable, cfg, cfg.ScrubError(err))
	}
	cl, err := newClaims(ctx, cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", logserver.ErrUnavailable, cfg, cfg.ScrubError(err))
	}
	b := &bucket{client: client, bucket: cfg.Bucket, prefix: cfg.Prefix}
	return &tlog.Storage{Name: cfg.String(), Driver: driver, Fetcher: b, ReadFile: b.get, Antispam: cl, Close: cl.Close,
		MinCheckpointInterval: MinCheckpointInterval}, nil
}

// bucket reads the log's objects.
type bucket struct {
	client         *s3.Client
	bucket, prefix string
}

// get reads the object at the tlog-tiles path p; a missing one is
// os.ErrNotExist.
func (b *bucket) get(ctx context.Context, p string) ([]byte, error) {
	key := p
	if b.prefix != "" {
		key = path.Join(b.prefix, p)
	}
	out, err := b.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(b.bucket), Key: aws.String(key)})
	if err != nil {
		var nsk *types.NoSuchKey
		var re *awshttp.ResponseError
		if errors.As(err, &nsk) || (errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound) {
			return nil, fmt.Errorf("s3://%s/%s: %w", b.bucket, key, os.ErrNotExist)
		}
		return nil, fmt.Errorf("s3://%s/%s: %w", b.bucket, key, err)
	}
	defer out.Body.Close()
	data, err := io.ReadAll(io.LimitReader(out.Body, maxObject))
	if err != nil {
		return nil, fmt.Errorf("s3://%s/%s: %w", b.bucket, key, err)
	}
	if len(data) >= maxObject {
		return nil, fmt.Errorf("s3://%s/%s: larger than %d bytes", b.bucket, key, maxObject-1)
	}
	return data, nil
}

// partialOrFull reads a partial resource, or the full one once the
// partial one is gone (the driver deletes partial tiles and bundles that a
// full one replaced).
func partialOrFull(ctx context.Context, p uint8, name func(uint8) string, get func(context.Context, string) ([]byte, error)) ([]byte, error) {
	data, err := get(ctx, name(p))
	if p != 0 && errors.Is(err, os.ErrNotExist) {
		return get(ctx, name(0))
	}
	return data, err
}

func (b *bucket) ReadCheckpoint(ctx context.Context) ([]byte, error) {
	return b.get(ctx, layout.CheckpointPath)
}

func (b *bucket) ReadTile(ctx context.Context, level, index uint64, p uint8) ([]byte, error) {
	return partialOrFull(ctx, p, func(p uint8) string { return layout.TilePath(level, index, p) }, b.get)
}

func (b *bucket) ReadEntryBundle(ctx context.Context, index uint64, p uint8) ([]byte, error) {
	return partialOrFull(ctx, p, func(p uint8) string { return layout.EntriesPath(index, p) }, b.get)
}
