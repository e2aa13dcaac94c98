package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// StateFile is the file in a device's home that remembers how far its
// watches got.
const StateFile = "state.json"

// state is StateFile: per watched prefix, the revision of the last change
// the device applied. Revisions number one account's bucket, so the
// account is kept too, and state for another account counts as none.
type state struct {
	Account string            `json:"account"`
	Applied map[string]uint64 `json:"applied"` // prefix ("" is all) → revision
}

// LastApplied returns the revision of the last change a watch of prefix
// applied on this device, as SetApplied recorded it; ok is false when
// there is none. Resume with Watch(ctx, prefix, ResumeFrom(rev)).
func (d *Device) LastApplied(prefix string) (rev uint64, ok bool, err error) {
	st, err := d.readState()
	if err != nil {
		return 0, false, err
	}
	rev, ok = st.Applied[prefix]
	return rev, ok, nil
}

// SetApplied records that the device has applied the change at revision
// rev of a watch of prefix. Call it after applying each change (or each
// batch): a change applied but not yet recorded is delivered again on
// resume, never lost.
func (d *Device) SetApplied(prefix string, rev uint64) error {
	st, err := d.readState()
	if err != nil {
		return err
	}
	st.Account = d.Account
	if st.Applied == nil {
		st.Applied = map[string]uint64{}
	}
	st.Applied[prefix] = rev
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return writeState(filepath.Join(d.Home, StateFile), append(b, '\n'))
}

// ForgetApplied drops what SetApplied recorded for prefix.
func (d *Device) ForgetApplied(prefix string) error {
	st, err := d.readState()
	if err != nil || st.Applied == nil {
		return err
	}
	if _, ok := st.Applied[prefix]; !ok {
		return nil
	}
	delete(st.Applied, prefix)
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return writeState(filepath.Join(d.Home, StateFile), append(b, '\n'))
}

func (d *Device) readState() (state, error) {
	if d.Home == "" {
		return state{}, errors.New("this device has no home folder to keep its state in")
	}
	path := filepath.Join(d.Home, StateFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return state{}, nil
	}
	if err != nil {
		return state{}, err
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return state{}, fmt.Errorf("%s is damaged (%v); remove it, then watch with --all to see every change again", path, err)
	}
	if st.Account != d.Account {
		return state{}, nil
	}
	return st, nil
}

// writeState replaces path in one step (write, then rename), mode 0600.
// It does not sync: it runs after every change a watch prints, and if a
// crash loses the last write the watch repeats some changes on resume,
// which is harmless, rather than skipping any.
func writeState(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+StateFile+"-*")
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}
