package repository

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/kopia/kopia/repo/blob"
)

// Kopia opens a repository from a connection file, building its storage from the file's storage
// type and configuration through a process-wide registry of storage types. Ferry registers its
// own type: its connection files name only an opening in progress in this process, and the
// storage is built from that opening's Location, in memory, wrapped in a formatPin. So no
// storage credential is ever written to the node's disk, and every repository Ferry opens
// survives a password change made elsewhere.
//
// The registry is global because Kopia's is (blob.AddSupportedStorage); an entry lives only
// while Open runs.

// storageType is the storage type of Ferry's connection files.
const storageType = "ferry-opening"

// openingConfig is the storage configuration written to a connection file.
type openingConfig struct {
	ID string `json:"id"`
}

// opening is what an open in progress hands to the storages Kopia builds for it.
type opening struct {
	location Location
	password *passwordBox
	// abort ends the requests of the storages built for the opening: the handle closed.
	abort context.Context
}

var openings = struct {
	sync.Mutex
	m map[string]*opening
}{m: map[string]*opening{}}

func init() {
	blob.AddSupportedStorage(storageType, openingConfig{}, openingStorage)
}

// register makes o available to the connection files that name the returned ID; the returned
// function removes it.
func register(o *opening) (string, func()) {
	id := rand.Text()
	openings.Lock()
	openings.m[id] = o
	openings.Unlock()
	return id, func() {
		openings.Lock()
		delete(openings.m, id)
		openings.Unlock()
	}
}

// openingStorage builds the storage of a connection file Ferry wrote.
func openingStorage(ctx context.Context, c *openingConfig, _ bool) (blob.Storage, error) {
	openings.Lock()
	o := openings.m[c.ID]
	openings.Unlock()
	if o == nil {
		return nil, errors.New("the connection file names no repository being opened by this process")
	}
	st, err := o.location.openStorage(ctx, false, o.abort)
	if err != nil {
		return nil, err
	}
	return &formatPin{Storage: st, password: o.password}, nil
}

// connectionStorage is a storage whose connection info names an opening.
type connectionStorage struct {
	blob.Storage
	id string
}

func (c connectionStorage) ConnectionInfo() blob.ConnectionInfo {
	return blob.ConnectionInfo{Type: storageType, Config: &openingConfig{ID: c.id}}
}

// Kopia keeps a copy of the format blobs in a repository's cache directory, and a handle adopts
// the copy another handle wrote there in the last 15 minutes instead of reading the storage. A
// handle that kept the format of an old password (formatPin) and one opened with the new
// password must therefore never share a cache directory: the open handles of one location get
// one directory per password. A directory whose last handle closes while the location has
// another is removed (its cache is of use to nobody); so are the other directories of a location
// whose first handle opens (left by an earlier run of the process).

// dirUse counts the open handles of one password in one directory.
type dirUse struct {
	password [sha256.Size]byte // a hash: the password itself is kept only by Kopia and the handle
	refs     int
}

var cacheDirs = struct {
	sync.Mutex
	m map[string]map[int]*dirUse // base directory → slot → use
}{m: map[string]map[int]*dirUse{}}

// takeCacheDir returns the directory below base for a handle opened with password, and the
// function to call when the handle closes.
func takeCacheDir(base, password string) (string, func()) {
	sum := sha256.Sum256([]byte(password))
	cacheDirs.Lock()
	defer cacheDirs.Unlock()
	slots := cacheDirs.m[base]
	if slots == nil {
		slots = map[int]*dirUse{}
		cacheDirs.m[base] = slots
		removeOtherSlots(base)
	}
	slot := 0
	for ; slots[slot] != nil && slots[slot].password != sum; slot++ {
	}
	if slots[slot] == nil {
		slots[slot] = &dirUse{password: sum}
	}
	slots[slot].refs++
	var once sync.Once
	return slotDir(base, slot), func() {
		once.Do(func() {
			cacheDirs.Lock()
			defer cacheDirs.Unlock()
			if slots[slot].refs--; slots[slot].refs > 0 {
				return
			}
			delete(slots, slot)
			if len(slots) == 0 {
				delete(cacheDirs.m, base) // the next first handle keeps this directory's cache
				return
			}
			_ = os.RemoveAll(slotDir(base, slot)) // a cache; at worst the next first handle removes it
		})
	}
}

// removeOtherSlots removes the directories of base's slots other than 0.
func removeOtherSlots(base string) {
	others, _ := filepath.Glob(base + "-*")
	for _, d := range others {
		_ = os.RemoveAll(d) // a cache left by an earlier run
	}
}

func slotDir(base string, slot int) string {
	if slot == 0 {
		return base
	}
	return base + "-" + strconv.Itoa(slot)
}
