// Command ctd-decoder is containerd/imgcrypt's stream processor that
// decrypts an encrypted image layer while containerd unpacks it: the
// encrypted layer on stdin, the plaintext on stdout, and on fd 3 the
// imgcrypt payload (typeurl io.containerd.ocicrypt.v1.Payload: the layer's
// descriptor and the decryption config CRI passes) that containerd 1.6's
// CRI plugin sends with image_decryption.key_model = "node".
//
// It is upstream's cmd/ctd-decoder (Apache-2.0, containerd authors), built
// against the imgcrypt v1.1.11 library: imgcrypt's cmd/ is an untagged
// nested module that the Go module proxy does not serve, so it cannot be
// go installed. The only change is the flag parsing (stdlib flag instead
// of urfave/cli); the one flag is the same: --decryption-keys-path DIR, the
// node's private keys, read on every layer (so a key added or removed takes
// effect on the next pull).
package main

import (
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/imgcrypt"
	"github.com/containerd/imgcrypt/images/encryption"
	"github.com/containerd/typeurl"
	encconfig "github.com/containers/ocicrypt/config"
	cryptutils "github.com/containers/ocicrypt/utils"
	"github.com/gogo/protobuf/proto"
	"github.com/gogo/protobuf/types"
)

// payloadFD is the file descriptor on which containerd passes the payload.
const payloadFD = 3

func main() {
	keysPath := flag.String("decryption-keys-path", "", "directory of private keys to decrypt with, besides the payload's (optional)")
	flag.Parse()
	if err := decrypt(*keysPath, os.Stdin, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "%s\n", err)
		os.Exit(1)
	}
}

func decrypt(keysPath string, in io.Reader, out io.Writer) error {
	payload, err := getPayload()
	if err != nil {
		return err
	}
	dc := &payload.DecryptConfig
	if keysPath != "" {
		cc, err := getDecryptionKeys(keysPath)
		if err != nil {
			return fmt.Errorf("unable to get decryption keys in provided key path: %w", err)
		}
		dc = combineDecryptionConfigs(cc.DecryptConfig, &payload.DecryptConfig)
	}
	_, r, _, err := encryption.DecryptLayer(dc, in, payload.Descriptor, false)
	if err != nil {
		return fmt.Errorf("call to DecryptLayer failed: %w", err)
	}
	if _, err := io.Copy(out, r); err != nil {
		return fmt.Errorf("could not copy data: %w", err)
	}
	return nil
}

func getPayload() (*imgcrypt.Payload, error) {
	f := os.NewFile(payloadFD, "configFd")
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("read payload: %w", err)
	}
	var anything types.Any
	if err := proto.Unmarshal(data, &anything); err != nil {
		return nil, fmt.Errorf("could not proto.Unmarshal() decrypt data: %w", err)
	}
	v, err := typeurl.UnmarshalAny(&anything)
	if err != nil {
		return nil, fmt.Errorf("could not UnmarshalAny() the decrypt data: %w", err)
	}
	l, ok := v.(*imgcrypt.Payload)
	if !ok {
		return nil, fmt.Errorf("unknown payload type %s", anything.TypeUrl)
	}
	return l, nil
}

// getDecryptionKeys reads every file under keysPath as a private key.
func getDecryptionKeys(keysPath string) (encconfig.CryptoConfig, error) {
	var cc encconfig.CryptoConfig
	var keys []string
	err := filepath.Walk(keysPath, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if info.IsDir() {
			return nil
		}
		if info.Mode()&os.ModeSymlink != 0 {
			return errors.New("symbolic links not supported in decryption keys paths")
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		keys = append(keys, base64.StdEncoding.EncodeToString(b))
		return nil
	})
	if err != nil {
		return cc, err
	}
	dc, err := cryptutils.SortDecryptionKeys(strings.Join(keys, ","))
	if err != nil {
		return cc, err
	}
	return encconfig.InitDecryption(dc), nil
}

func combineDecryptionConfigs(dc1, dc2 *encconfig.DecryptConfig) *encconfig.DecryptConfig {
	cc := encconfig.CombineCryptoConfigs([]encconfig.CryptoConfig{{DecryptConfig: dc1}, {DecryptConfig: dc2}})
	return cc.DecryptConfig
}
