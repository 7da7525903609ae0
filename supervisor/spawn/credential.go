package spawn

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"

	"github.com/herd-server/herd/scripts"
)

// Credential resolves --uid and --gid to the credential the workers run with; nil
// when neither is set. An unknown name is an error naming its key; then, only root may
// change the workers' user (the names are checked first, so that herd check run as another
// user still says whether they exist).
func Credential(uidName, gidName string) (*syscall.Credential, error) {
	if uidName == "" && gidName == "" {
		return nil, nil
	}
	cred := &syscall.Credential{Uid: 0, Gid: 0, Groups: []uint32{}}
	if uidName != "" {
		u, err := user.Lookup(uidName)
		if err != nil {
			if u, err = user.LookupId(uidName); err != nil {
				return nil, fmt.Errorf("uid: no user %q: %w", uidName, err)
			}
		}
		id, _ := strconv.ParseUint(u.Uid, 10, 32)
		gid, _ := strconv.ParseUint(u.Gid, 10, 32)
		cred.Uid, cred.Gid = uint32(id), uint32(gid)
	}
	if gidName != "" {
		g, err := user.LookupGroup(gidName)
		if err != nil {
			if g, err = user.LookupGroupId(gidName); err != nil {
				return nil, fmt.Errorf("gid: no group %q: %w", gidName, err)
			}
		}
		id, _ := strconv.ParseUint(g.Gid, 10, 32)
		cred.Gid = uint32(id)
	}
	if os.Geteuid() != 0 {
		key := "uid"
		if uidName == "" {
			key = "gid"
		}
		return nil, fmt.Errorf("%s: only root may run the workers as another user or group (herd runs as uid %d)", key, os.Geteuid())
	}
	// Groups empty: setgroups drops root's supplementary groups, leaving just cred.Gid.
	return cred, nil
}

// WithCredential makes the spawner run workers as cred, handing them their code inline.
func (s *Exec) WithCredential(cred *syscall.Credential) *Exec {
	if cred != nil {
		s.Credential = cred
		s.ScriptSource = string(scripts.WorkerPy)
	}
	return s
}
