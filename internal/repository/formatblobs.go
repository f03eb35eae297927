package repository

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kopia/kopia/repo/blob"
	"github.com/kopia/kopia/repo/format"
)

// formatBlobs are the contents of a repository's two format blobs, kopia.repository and
// kopia.blobcfg (nil when there is none). Kopia decrypts kopia.blobcfg only with the key that
// opens kopia.repository and offers no other way to decrypt either; checks and repairs of the
// format therefore run a format.Manager on copies held in memory (memFormat).
type formatBlobs struct {
	repository, blobCfg []byte
}

// readFormatBlobs reads both format blobs from st.
func readFormatBlobs(ctx context.Context, st blob.Storage) (*formatBlobs, error) {
	var repoBuf, cfgBuf byteBuffer
	if err := st.GetBlob(ctx, format.KopiaRepositoryBlobID, 0, -1, &repoBuf); err != nil {
		return nil, err // as the storage reports it: Kopia branches on blob.ErrBlobNotFound
	}
	f := &formatBlobs{repository: bytes.Clone(repoBuf.Bytes())}
	switch err := st.GetBlob(ctx, format.KopiaBlobCfgBlobID, 0, -1, &cfgBuf); {
	case err == nil:
		f.blobCfg = bytes.Clone(cfgBuf.Bytes())
	case !errors.Is(err, blob.ErrBlobNotFound):
		return nil, err
	}
	return f, nil
}

func (f *formatBlobs) equal(o *formatBlobs) bool {
	return bytes.Equal(f.repository, o.repository) && bytes.Equal(f.blobCfg, o.blobCfg) &&
		(f.blobCfg == nil) == (o.blobCfg == nil)
}

// manager opens the blobs with password, as Kopia opens a repository's format.
func (f *formatBlobs) manager(ctx context.Context, password string) (*format.Manager, error) {
	return format.NewManager(ctx, &memFormat{f: f}, "", format.DefaultRepositoryBlobCacheDuration, password, time.Now)
}

// opens reports whether password opens both blobs.
func (f *formatBlobs) opens(ctx context.Context, password string) bool {
	_, err := f.manager(ctx, password)
	return err == nil
}

// blobCfgContent returns what kopia.blobcfg holds, when kopia.repository opens with
// repoPassword and kopia.blobcfg is encrypted under it or under one of others. Kopia decrypts
// kopia.blobcfg only with the key that opens kopia.repository, so the format is first re-keyed
// in memory to each password in turn, as ChangePassword re-keys it. When no password decrypts
// it, an empty kopia.blobcfg is still recognized by its length (the encryption keeps the length
// of what it encrypts); one with content is an error, since the content cannot be kept.
func (f *formatBlobs) blobCfgContent(ctx context.Context, repoPassword string, others ...string) (format.BlobStorageConfiguration, error) {
	if f.blobCfg == nil {
		return format.BlobStorageConfiguration{}, nil
	}
	rekeyed := &formatBlobs{repository: f.repository}
	m, err := rekeyed.manager(ctx, repoPassword)
	if err != nil {
		return format.BlobStorageConfiguration{}, fmt.Errorf("open %s: %w", format.KopiaRepositoryBlobID, err)
	}
	emptyLength := -1
	for _, p := range append([]string{repoPassword}, others...) {
		if err := m.ChangePassword(ctx, p); err != nil { // writes an empty kopia.blobcfg, in memory
			return format.BlobStorageConfiguration{}, err
		}
		if emptyLength < 0 {
			emptyLength = len(rekeyed.blobCfg)
		}
		candidate := &formatBlobs{repository: rekeyed.repository, blobCfg: f.blobCfg}
		if cm, err := candidate.manager(ctx, p); err == nil {
			return cm.BlobCfgBlob(ctx)
		}
	}
	if len(f.blobCfg) == emptyLength {
		return format.BlobStorageConfiguration{}, nil
	}
	return format.BlobStorageConfiguration{}, errors.New(string(format.KopiaBlobCfgBlobID) +
		" holds storage settings (retention) under a password that is neither the old nor the new one; " +
		"the repair keeps them only when it is given that password as the new one")
}

// memFormat is a storage that holds only the format blobs f, in memory: a format.Manager reads
// them from it and writes them to it.
type memFormat struct {
	blob.DefaultProviderImplementation
	f *formatBlobs
}

var errNotFormat = errors.New("only the format blobs are held in memory")

func (m *memFormat) GetBlob(_ context.Context, id blob.ID, offset, length int64, output blob.OutputBuffer) error {
	switch {
	case id == format.KopiaRepositoryBlobID:
		return serve(m.f.repository, offset, length, output)
	case id == format.KopiaBlobCfgBlobID && m.f.blobCfg != nil:
		return serve(m.f.blobCfg, offset, length, output)
	case id == format.KopiaBlobCfgBlobID:
		return fmt.Errorf("%s: %w", id, blob.ErrBlobNotFound)
	default:
		return fmt.Errorf("%s: %w", id, errNotFormat)
	}
}

func (m *memFormat) PutBlob(_ context.Context, id blob.ID, data blob.Bytes, _ blob.PutOptions) error {
	var buf bytes.Buffer
	if _, err := data.WriteTo(&buf); err != nil {
		return err
	}
	switch id {
	case format.KopiaRepositoryBlobID:
		m.f.repository = buf.Bytes()
	case format.KopiaBlobCfgBlobID:
		m.f.blobCfg = buf.Bytes()
	default:
		return fmt.Errorf("%s: %w", id, errNotFormat)
	}
	return nil
}

func (m *memFormat) GetMetadata(_ context.Context, id blob.ID) (blob.Metadata, error) {
	return blob.Metadata{}, fmt.Errorf("%s: %w", id, errNotFormat)
}

func (m *memFormat) ListBlobs(context.Context, blob.ID, func(blob.Metadata) error) error {
	return errNotFormat
}

func (m *memFormat) DeleteBlob(_ context.Context, id blob.ID) error {
	return fmt.Errorf("%s: %w", id, errNotFormat)
}

func (m *memFormat) ConnectionInfo() blob.ConnectionInfo { return blob.ConnectionInfo{} }

func (m *memFormat) DisplayName() string { return "format blobs in memory" }

// serve writes data[offset:offset+length] (all of it when length < 0) to output, as a storage's
// GetBlob does.
func serve(data []byte, offset, length int64, output blob.OutputBuffer) error {
	output.Reset()
	if length < 0 {
		if offset != 0 {
			return blob.ErrInvalidRange
		}
		length = int64(len(data))
	}
	if offset < 0 || offset+length > int64(len(data)) {
		return blob.ErrInvalidRange
	}
	_, err := output.Write(data[offset : offset+length])
	return err
}
