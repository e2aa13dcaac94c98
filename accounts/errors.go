package accounts

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Kinds of domain error. Callers test them with errors.Is; the admin
// service turns them into error codes and the CLI back into these.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	ErrRevoked  = errors.New("revoked")
	ErrDisabled = errors.New("disabled")
	ErrInvalid  = errors.New("invalid")
	// ErrForbidden is a caller that may not do what it asks.
	ErrForbidden = errors.New("forbidden")
	// ErrConflict is a change that lost a race with another.
	ErrConflict = errors.New("conflict")
	// ErrQuota is a write a person's quota has no room for.
	ErrQuota = errors.New("over quota")
)

// ValidationError lists what is wrong with an input, field by field.
type ValidationError struct {
	Problems map[string]string
}

func (e *ValidationError) Error() string {
	fields := make([]string, 0, len(e.Problems))
	for f := range e.Problems {
		fields = append(fields, f)
	}
	sort.Strings(fields)
	parts := make([]string, len(fields))
	for i, f := range fields {
		parts[i] = f + ": " + e.Problems[f]
	}
	return strings.Join(parts, "; ")
}

// Is makes a ValidationError match ErrInvalid.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

func invalid(field, format string, args ...any) error {
	return &ValidationError{Problems: map[string]string{field: fmt.Sprintf(format, args...)}}
}

// kindError carries a kind and a message written for a person.
type kindError struct {
	kind error
	msg  string
}

func (e *kindError) Error() string        { return e.msg }
func (e *kindError) Is(target error) bool { return target == e.kind }

// errorf returns an error of the given kind whose text is the message alone.
func errorf(kind error, format string, args ...any) error {
	return &kindError{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// Kind names an error's kind: "invalid", "not_found", "exists", "revoked",
// "disabled", "forbidden", "conflict", "quota", or "internal".
func Kind(err error) string {
	switch {
	case errors.Is(err, ErrInvalid):
		return "invalid"
	case errors.Is(err, ErrNotFound):
		return "not_found"
	case errors.Is(err, ErrExists):
		return "exists"
	case errors.Is(err, ErrRevoked):
		return "revoked"
	case errors.Is(err, ErrDisabled):
		return "disabled"
	case errors.Is(err, ErrForbidden):
		return "forbidden"
	case errors.Is(err, ErrConflict):
		return "conflict"
	case errors.Is(err, ErrQuota):
		return "quota"
	}
	return "internal"
}

// ErrorOfKind rebuilds an error of a named kind, as Kind names it, with a
// message; it is how a client turns a remote error back into a kind.
func ErrorOfKind(kind, msg string) error {
	k := map[string]error{
		"invalid":   ErrInvalid,
		"not_found": ErrNotFound,
		"exists":    ErrExists,
		"revoked":   ErrRevoked,
		"disabled":  ErrDisabled,
		"forbidden": ErrForbidden,
		"conflict":  ErrConflict,
		"quota":     ErrQuota,
	}[kind]
	if k == nil {
		return errors.New(msg)
	}
	return &kindError{kind: k, msg: msg}
}
