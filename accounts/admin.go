package accounts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/latch-dev/latch/operator"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// requestInfoHeader carries, on a request that crossed a service import
// with share on, the calling client as the server saw it. The server
// writes it, replacing any the client sent.
const requestInfoHeader = "Nats-Request-Info"

// caller is who sent an admin request: a user of LATCH_ADMIN, named by
// its key as the server reported it in Nats-Request-Info, and by the name
// its creds were issued under. Anything else is refused.
func (s *Service) caller(ctx context.Context, info string) (Actor, error) {
	var ci struct {
		Account string `json:"acc"`
		User    string `json:"user"`
		NameTag string `json:"name_tag"`
		Host    string `json:"host"`
	}
	if info == "" || json.Unmarshal([]byte(info), &ci) != nil || s.cfg.AdminAccount == "" ||
		ci.Account != s.cfg.AdminAccount || ci.User == "" {
		return Actor{}, errorf(ErrForbidden, "the admin service answers admin creds only (a user of LATCH_ADMIN); see `latch admin creds issue`")
	}
	name := ci.NameTag
	if a, err := s.adminByKey(ctx, ci.User); err == nil {
		name = a.Name
	}
	return Actor{Name: "admin:" + name, Key: ci.User, From: ci.Host}, nil
}

// ServeAdmin registers the admin service on nc, a LATCH account connection.
func (s *Service) ServeAdmin(nc *nats.Conn, version string) (micro.Service, error) {
	svc, err := micro.AddService(nc, micro.Config{
		Name:        "latch-admin",
		Version:     version,
		Description: "latch accounts and devices",
	})
	if err != nil {
		return nil, err
	}
	g := svc.AddGroup(operator.AdminSubjectPrefix)
	for subject, h := range s.adminHandlers() {
		// The answer is micro's own, from the handler, so that micro
		// counts errors in its statistics. An endpoint takes one request
		// at a time; different endpoints run at once.
		err := g.AddEndpoint("latch_"+subjectName(subject), micro.HandlerFunc(func(req micro.Request) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			who, err := s.caller(ctx, req.Headers().Get(requestInfoHeader))
			var out any
			if err == nil {
				out, err = h(WithActor(ctx, who), req.Data())
			}
			if err := respond(req, out, err); err != nil {
				s.log.Warn("admin reply lost", "endpoint", subject, "err", err)
			}
		}), micro.WithEndpointSubject(subject))
		if err != nil {
			svc.Stop()
			return nil, err
		}
	}
	return svc, nil
}

// adminHandler answers the bytes of a request with a reply to encode.
type adminHandler func(ctx context.Context, data []byte) (any, error)

// handle adds the handler of an endpoint to hs: the request is decoded,
// and refused in the API's words, once; a list answers [] rather than null.
func handle[Req, Rep any](hs map[string]adminHandler, e Endpoint[Req, Rep], h func(context.Context, Req) (Rep, error)) {
	hs[string(e)] = func(ctx context.Context, data []byte) (any, error) {
		var r Req
		if err := decode(data, &r); err != nil {
			return nil, err
		}
		out, err := h(ctx, r)
		if v := reflect.ValueOf(out); v.Kind() == reflect.Slice && v.IsNil() {
			return reflect.MakeSlice(v.Type(), 0, 0).Interface(), err
		}
		return out, err
	}
}

// byName is the handler of a request that names a person.
func byName[Rep any](f func(ctx context.Context, name string) (Rep, error)) func(context.Context, AccountRequest) (Rep, error) {
	return func(ctx context.Context, r AccountRequest) (Rep, error) { return f(ctx, r.Name) }
}

// adminHandlers are the admin service's endpoints and what answers them.
func (s *Service) adminHandlers() map[string]adminHandler {
	hs := map[string]adminHandler{}
	handle(hs, EndpointAccountAdd, func(ctx context.Context, r AccountAddRequest) (Person, error) {
		return s.CreatePerson(ctx, NewPerson{Name: r.Name, DisplayName: r.DisplayName, Role: r.Role, Limits: r.Limits})
	})
	handle(hs, EndpointAccountList, func(ctx context.Context, _ NoRequest) ([]Person, error) { return s.Persons(ctx) })
	handle(hs, EndpointReleaseUpload, s.UploadReleaseChunk)
	handle(hs, EndpointReleasePublish, s.PublishRelease)
	handle(hs, EndpointReleaseList, func(ctx context.Context, _ NoRequest) ([]Release, error) { return s.Releases(ctx) })
	handle(hs, EndpointReleaseYank, s.YankRelease)
	handle(hs, EndpointAccountShow, byName(s.Account))
	handle(hs, EndpointAccountEdit, func(ctx context.Context, r AccountEditRequest) (Person, error) {
		return s.EditLimits(ctx, r.Name, r.LimitsEdit)
	})
	handle(hs, EndpointAccountDisable, byName(s.DisablePerson))
	handle(hs, EndpointAccountEnable, byName(s.EnablePerson))
	handle(hs, EndpointAccountDelete, byName(s.DeletePerson))
	handle(hs, EndpointAccountConsumers, func(ctx context.Context, r ConsumersRequest) (ConsumersReply, error) {
		var out ConsumersReply
		if r.Clear {
			n, err := s.ClearRecordsConsumers(ctx, r.Name)
			if err != nil {
				return out, err
			}
			out.Cleared = n
		}
		cs, err := s.RecordsConsumers(ctx, r.Name)
		out.Consumers = cs
		if out.Consumers == nil {
			out.Consumers = []RecordsConsumer{}
		}
		return out, err
	})
	handle(hs, EndpointAccountRestore, func(ctx context.Context, r RestoreRequest) (Restored, error) {
		if r.At.IsZero() {
			return Restored{}, invalid("at", "say when to restore to")
		}
		return s.RestoreRecords(ctx, r.Name, r.At)
	})
	handle(hs, EndpointDeviceIssue, func(ctx context.Context, r DeviceIssueRequest) (DeviceIssueReply, error) {
		// Bounded before it is multiplied: a huge number would overflow
		// into a lifetime of never, or of nothing.
		if r.TTLSeconds > int64(MaxDeviceTTL/time.Second) {
			return DeviceIssueReply{}, invalid("ttl_seconds", "a device's lifetime is at most %d seconds (10 years), or -1 for never", int64(MaxDeviceTTL/time.Second))
		}
		ttl := time.Duration(r.TTLSeconds) * time.Second
		if r.TTLSeconds < 0 {
			ttl = -1
		}
		d, creds, err := s.IssueDevice(ctx, NewDevice{Person: r.Account, Name: r.Name, TTL: ttl})
		return DeviceIssueReply{Device: d, Creds: string(creds)}, err
	})
	handle(hs, EndpointDeviceList, func(ctx context.Context, r DeviceRequest) ([]Device, error) { return s.Devices(ctx, r.Account) })
	handle(hs, EndpointDeviceRevoke, func(ctx context.Context, r DeviceRequest) (DeviceRevokeReply, error) {
		before, err := s.Device(ctx, r.Account, r.Device)
		if err != nil {
			return DeviceRevokeReply{}, err
		}
		d, err := s.RevokeDevice(ctx, r.Account, before.PublicKey)
		return DeviceRevokeReply{Device: d, AlreadyRevoked: before.Revoked()}, err
	})
	handle(hs, EndpointDeviceRename, func(ctx context.Context, r DeviceRenameRequest) (Device, error) {
		return s.RenameDevice(ctx, r.Account, r.Device, r.Name)
	})
	handle(hs, EndpointDeviceDisconnect, func(ctx context.Context, r DeviceRequest) (DeviceDisconnectReply, error) {
		d, n, err := s.DisconnectDevice(ctx, r.Account, r.Device)
		return DeviceDisconnectReply{Device: d, Closed: n}, err
	})
	handle(hs, EndpointDeviceApprove, func(ctx context.Context, r DeviceApproveRequest) (Device, error) {
		return s.ApproveEnrollment(ctx, r.Code, r.Account)
	})
	handle(hs, EndpointInviteCreate, func(ctx context.Context, r InviteCreateRequest) (InviteCreateReply, error) {
		var token string
		var inv Invite
		var err error
		switch {
		case r.For != "" && r.Admin:
			return InviteCreateReply{}, invalid("admin", "an invite for an existing person adds a passkey; it does not change their role")
		case r.For != "":
			token, inv, err = s.CreateInviteFor(ctx, r.For, r.Recover)
		case r.Recover:
			return InviteCreateReply{}, invalid("recover", "recover goes with an invite for an existing person (for)")
		default:
			token, inv, err = s.CreateInvite(ctx, r.Admin)
		}
		if err != nil {
			return InviteCreateReply{}, err
		}
		return InviteCreateReply{Token: token, Link: s.InviteLink(token), Invite: inv}, nil
	})
	handle(hs, EndpointInviteList, func(ctx context.Context, _ NoRequest) ([]Invite, error) { return s.Invites(ctx) })
	handle(hs, EndpointInviteRevoke, func(ctx context.Context, r InviteRevokeRequest) (InviteRevokeReply, error) {
		return InviteRevokeReply{Revoked: r.ID}, s.RevokeInvite(ctx, r.ID)
	})
	handle(hs, EndpointAuditList, func(ctx context.Context, r AuditRequest) ([]AuditEvent, error) {
		switch {
		case r.Last == 0:
			r.Last = 50
		case r.Last < 0 || r.Last > MaxAuditLast:
			return nil, invalid("last", "give 1 to %d entries (0 or none: 50)", MaxAuditLast)
		}
		return s.Audit(ctx, r.Last)
	})
	handle(hs, EndpointAdminCredsIssue, func(ctx context.Context, r AdminCredsRequest) (AdminCredsReply, error) {
		tok, a, err := s.IssueAdminCreds(ctx, r.Name, r.PublicKey)
		return AdminCredsReply{AdminCreds: a, JWT: tok}, err
	})
	handle(hs, EndpointAdminCredsList, func(ctx context.Context, _ NoRequest) ([]AdminCreds, error) { return s.AdminCreds(ctx) })
	handle(hs, EndpointAdminCredsRevoke, func(ctx context.Context, r AdminCredsRequest) (AdminCreds, error) {
		return s.RevokeAdminCreds(ctx, r.Name)
	})
	handle(hs, EndpointClusterStatus, func(ctx context.Context, _ NoRequest) (ClusterStatus, error) {
		return s.ClusterStatus(ctx, clusterStatusWait)
	})
	handle(hs, EndpointClusterRepair, func(ctx context.Context, _ NoRequest) (ClusterRepairReply, error) {
		st, err := s.ClusterStatus(ctx, clusterStatusWait)
		if err != nil {
			return ClusterRepairReply{}, err
		}
		repaired, err := s.Repair(ctx, st.Drifted())
		if repaired == nil {
			repaired = []string{}
		}
		return ClusterRepairReply{Repaired: repaired}, err
	})
	handle(hs, EndpointClusterRebalance, func(ctx context.Context, _ NoRequest) (RebalanceResult, error) {
		if _, _, err := s.Refresh(ctx); err != nil {
			return RebalanceResult{}, err
		}
		return s.Rebalance(ctx)
	})
	return hs
}

// clusterStatusWait is how long the admin service waits for the nodes of
// a cluster to say how they are.
const clusterStatusWait = 3 * time.Second

// subjectName turns "account.add" into "account_add", a valid endpoint name.
func subjectName(subject string) string {
	b := []byte(subject)
	for i, c := range b {
		if c == '.' {
			b[i] = '_'
		}
	}
	return string(b)
}

func decode(data []byte, v any) error {
	if len(data) == 0 {
		data = []byte("{}")
	}
	if err := json.Unmarshal(data, v); err != nil {
		return invalid("request", "the request is not valid JSON for this endpoint: %s", jsonProblem(err))
	}
	return nil
}

// respond answers a request: JSON, or for an error micro's error reply,
// the service-error headers with a code and a JSON body naming its kind.
func respond(req micro.Request, out any, err error) error {
	if err != nil {
		kind := Kind(err)
		// An error may quote the request; a long one would make the reply
		// larger than the server passes, and the caller would wait in vain.
		msg := clip(err.Error(), maxErrorText)
		body, _ := json.Marshal(errorReply{Kind: kind, Message: msg})
		return req.Error(kind.ServiceCode(), msg, body)
	}
	return req.RespondJSON(out)
}

// jsonProblem says what is wrong with a JSON request in the API's words,
// not Go's (no Go type names).
func jsonProblem(err error) string {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr) && typeErr.Field != "":
		return fmt.Sprintf("%q must be a JSON %s", typeErr.Field, jsonKindOf(typeErr.Type.Kind().String()))
	case errors.As(err, &typeErr):
		return "the request must be a JSON object"
	case errors.As(err, &syntaxErr):
		return fmt.Sprintf("it is not JSON (at byte %d)", syntaxErr.Offset)
	}
	return "it is not a JSON object"
}

func jsonKindOf(goKind string) string {
	switch goKind {
	case "string":
		return "string"
	case "bool":
		return "true or false"
	case "int", "int64", "int32", "uint", "uint64", "uint32", "float64":
		return "number"
	case "slice":
		return "array"
	case "struct", "map":
		return "object"
	}
	return "value of another type"
}

// maxErrorText is the most an error reply says, in characters.
const maxErrorText = 1000
