package s3test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

func TestStart(t *testing.T) {
	s := Start(t)
	resp, err := http.Get(s.Endpoint + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// Unsigned requests are refused: the gateway checks credentials.
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("unsigned GET /: %d, want 403", resp.StatusCode)
	}
}

// TestStopStart: a stopped server does not answer; started again it has
// the same endpoint and the objects written before the stop.
func TestStopStart(t *testing.T) {
	t0 := time.Now()
	s := Start(t)
	t.Logf("weed started in %s", time.Since(t0).Round(time.Millisecond))
	ctx := context.Background()
	c := s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(s.Endpoint), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, "")})
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("bkt")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("bkt"), Key: aws.String("k"), Body: strings.NewReader("v")}); err != nil {
		t.Fatal(err)
	}
	t.Logf("object written %s after the start", time.Since(t0).Round(time.Millisecond))
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if resp, err := http.Get(s.Endpoint + "/"); err == nil {
		resp.Body.Close()
		t.Fatalf("a stopped server answered %d", resp.StatusCode)
	}
	t0 = time.Now()
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("weed restarted in %s", time.Since(t0).Round(time.Millisecond))
	out, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("bkt"), Key: aws.String("k")})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("object read %s after the restart", time.Since(t0).Round(time.Millisecond))
	b, _ := io.ReadAll(out.Body)
	out.Body.Close()
	if string(b) != "v" {
		t.Fatalf("after restart: %q", b)
	}
	if _, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("bkt"), Key: aws.String("k2"), Body: strings.NewReader("v2")}); err != nil {
		t.Fatal(err)
	}
	t.Logf("object written %s after the restart", time.Since(t0).Round(time.Millisecond))
}
