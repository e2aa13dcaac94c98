package accounts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// The admin service's endpoints, under AdminSubjectPrefix.
const (
	EndpointAccountAdd       = "account.add"
	EndpointAccountList      = "account.ls"
	EndpointAccountShow      = "account.show"
	EndpointAccountDisable   = "account.disable"
	EndpointAccountEnable    = "account.enable"
	EndpointAccountDelete    = "account.delete"
	EndpointDeviceIssue      = "device.issue"
	EndpointDeviceList       = "device.ls"
	EndpointDeviceRevoke     = "device.revoke"
	EndpointDeviceRename     = "device.rename"
	EndpointDeviceDisconnect = "device.disconnect"
	EndpointDeviceApprove    = "device.approve"
	EndpointInviteCreate     = "invite.create"
	EndpointInviteList       = "invite.ls"
	EndpointInviteRevoke     = "invite.revoke"
	EndpointAuditList        = "audit.ls"

	EndpointAccountConsumers = "account.consumers"
	EndpointAccountRestore   = "account.restore"
	EndpointAccountEdit      = "account.edit"
	EndpointAdminCredsIssue  = "admin.creds.issue"
	EndpointAdminCredsList   = "admin.creds.ls"
	EndpointAdminCredsRevoke = "admin.creds.revoke"

	// requestInfoHeader carries, on a request that crossed a service
	// import with share on, the calling client as the server saw it.
	// The server writes it, replacing any the client sent.
	requestInfoHeader = "Nats-Request-Info"
)

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

// ConsumersRequest lists, or clears, the consumers of a person's records
// bucket.
type ConsumersRequest struct {
	Name  string `json:"name"`
	Clear bool   `json:"clear,omitempty"`
}

// ConsumersReply is the consumers of a records bucket, and how many a
// clear deleted.
type ConsumersReply struct {
	Consumers []RecordsConsumer `json:"consumers"`
	Cleared   int               `json:"cleared"`
}

// AccountEditRequest changes a person's limits; a zero field keeps one as
// it is.
type AccountEditRequest struct {
	Name string `json:"name"`
	LimitsEdit
}

// DeviceRenameRequest gives a device (by name or key) a new name.
type DeviceRenameRequest struct {
	Account string `json:"account"`
	Device  string `json:"device"`
	Name    string `json:"name"`
}

// RestoreRequest sets a person's records back to what they were at a time.
type RestoreRequest struct {
	Name string    `json:"name"`
	At   time.Time `json:"at"`
}

// DeviceDisconnectReply is a device whose connections were closed, and how
// many.
type DeviceDisconnectReply struct {
	Device Device `json:"device"`
	Closed int    `json:"closed"`
}

// AdminCredsRequest asks for admin creds for a key the caller made.
type AdminCredsRequest struct {
	Name      string `json:"name"`
	PublicKey string `json:"public_key,omitempty"`
}

// AdminCredsReply is new admin creds: the user JWT for the caller's key.
type AdminCredsReply struct {
	AdminCreds
	JWT string `json:"jwt"`
}

// AccountRequest names a person account.
type AccountRequest struct {
	Name string `json:"name"`
}

// AccountAddRequest asks for a new person account.
type AccountAddRequest struct {
	Name        string `json:"name"`
	DisplayName string `json:"display_name,omitempty"`
	Role        string `json:"role,omitempty"`
	Limits      Limits `json:"limits,omitzero"`
}

// DeviceIssueRequest asks for a device made on the server.
type DeviceIssueRequest struct {
	Account string `json:"account"`
	Name    string `json:"name"`
	// TTLSeconds is the JWT's lifetime: 0 takes the server's default,
	// -1 never expires.
	TTLSeconds int64 `json:"ttl_seconds,omitempty"`
}

// DeviceIssueReply carries the new device and its creds, shown once.
type DeviceIssueReply struct {
	Device Device `json:"device"`
	Creds  string `json:"creds"`
}

// DeviceRequest names a device of an account by name or public key.
type DeviceRequest struct {
	Account string `json:"account"`
	Device  string `json:"device,omitempty"`
}

// DeviceRevokeReply tells whether the revocation changed anything.
type DeviceRevokeReply struct {
	Device         Device `json:"device"`
	AlreadyRevoked bool   `json:"already_revoked"`
}

// DeviceApproveRequest approves a device's pending enrollment for an
// account, by the user code the device shows.
type DeviceApproveRequest struct {
	Account string `json:"account"`
	Code    string `json:"code"`
}

// InviteCreateRequest asks for an invite link.
type InviteCreateRequest struct {
	Admin bool `json:"admin,omitempty"`
	// For makes the invite add a passkey to this existing person instead;
	// Recover allows it when the person has a passkey already.
	For     string `json:"for,omitempty"`
	Recover bool   `json:"recover,omitempty"`
}

// InviteRevokeRequest names an invite by its ID.
type InviteRevokeRequest struct {
	ID string `json:"id"`
}

// InviteCreateReply carries the new invite's token, shown once, and its
// link; Link is empty when the server has no public URL.
type InviteCreateReply struct {
	Token  string `json:"token"`
	Link   string `json:"link"`
	Invite Invite `json:"invite"`
}

// MaxAuditLast is the most audit entries one request reads.
const MaxAuditLast = 10_000

// AuditRequest asks for the last entries of the audit trail.
type AuditRequest struct {
	Last int `json:"last"`
}

// errorReply is the body of an error response.
type errorReply struct {
	Kind    ErrorKind `json:"kind"`
	Message string    `json:"message"`
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
	g := svc.AddGroup(AdminSubjectPrefix)
	add := func(subject string, h func(ctx context.Context, data []byte) (any, error)) error {
		name := "latch_" + subjectName(subject)
		// The answer is micro's own, from the handler, so that micro counts
		// errors in its statistics. An endpoint takes one request at a
		// time; different endpoints run at once.
		return g.AddEndpoint(name, micro.HandlerFunc(func(req micro.Request) {
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
	}
	handlers := map[string]func(ctx context.Context, data []byte) (any, error){
		EndpointAccountAdd: decoded(func(ctx context.Context, r AccountAddRequest) (any, error) {
			return s.CreatePerson(ctx, NewPerson{Name: r.Name, DisplayName: r.DisplayName, Role: r.Role, Limits: r.Limits})
		}),
		EndpointAccountList: func(ctx context.Context, data []byte) (any, error) {
			ps, err := s.Persons(ctx)
			if ps == nil {
				ps = []Person{}
			}
			return ps, err
		},
		EndpointAccountShow: withName(s.Account),
		EndpointAccountEdit: decoded(func(ctx context.Context, r AccountEditRequest) (any, error) {
			return s.EditLimits(ctx, r.Name, r.LimitsEdit)
		}),
		EndpointAccountDisable: withName(s.DisablePerson),
		EndpointAccountEnable:  withName(s.EnablePerson),
		EndpointAccountDelete:  withName(s.DeletePerson),
		EndpointDeviceIssue: decoded(func(ctx context.Context, r DeviceIssueRequest) (any, error) {
			// Bounded before it is multiplied: a huge number would
			// overflow into a lifetime of never, or of nothing.
			if r.TTLSeconds > int64(MaxDeviceTTL/time.Second) {
				return nil, invalid("ttl_seconds", "a device's lifetime is at most %d seconds (10 years), or -1 for never", int64(MaxDeviceTTL/time.Second))
			}
			ttl := time.Duration(r.TTLSeconds) * time.Second
			if r.TTLSeconds < 0 {
				ttl = -1
			}
			d, creds, err := s.IssueDevice(ctx, NewDevice{Person: r.Account, Name: r.Name, TTL: ttl})
			if err != nil {
				return nil, err
			}
			return DeviceIssueReply{Device: d, Creds: string(creds)}, nil
		}),
		EndpointDeviceList: decoded(func(ctx context.Context, r DeviceRequest) (any, error) {
			ds, err := s.Devices(ctx, r.Account)
			if ds == nil {
				ds = []Device{}
			}
			return ds, err
		}),
		EndpointDeviceRevoke: decoded(func(ctx context.Context, r DeviceRequest) (any, error) {
			before, err := s.Device(ctx, r.Account, r.Device)
			if err != nil {
				return nil, err
			}
			d, err := s.RevokeDevice(ctx, r.Account, before.PublicKey)
			if err != nil {
				return nil, err
			}
			return DeviceRevokeReply{Device: d, AlreadyRevoked: before.Revoked()}, nil
		}),
		EndpointDeviceRename: decoded(func(ctx context.Context, r DeviceRenameRequest) (any, error) {
			return s.RenameDevice(ctx, r.Account, r.Device, r.Name)
		}),
		EndpointDeviceDisconnect: decoded(func(ctx context.Context, r DeviceRequest) (any, error) {
			d, n, err := s.DisconnectDevice(ctx, r.Account, r.Device)
			if err != nil {
				return nil, err
			}
			return DeviceDisconnectReply{Device: d, Closed: n}, nil
		}),
		EndpointDeviceApprove: decoded(func(ctx context.Context, r DeviceApproveRequest) (any, error) {
			return s.ApproveEnrollment(ctx, r.Code, r.Account)
		}),
		EndpointInviteCreate: decoded(func(ctx context.Context, r InviteCreateRequest) (any, error) {
			var token string
			var inv Invite
			var err error
			switch {
			case r.For != "" && r.Admin:
				return nil, invalid("admin", "an invite for an existing person adds a passkey; it does not change their role")
			case r.For != "":
				token, inv, err = s.CreateInviteFor(ctx, r.For, r.Recover)
			case r.Recover:
				return nil, invalid("recover", "recover goes with an invite for an existing person (for)")
			default:
				token, inv, err = s.CreateInvite(ctx, r.Admin)
			}
			if err != nil {
				return nil, err
			}
			return InviteCreateReply{Token: token, Link: s.InviteLink(token), Invite: inv}, nil
		}),
		EndpointInviteList: func(ctx context.Context, data []byte) (any, error) {
			invs, err := s.Invites(ctx)
			if invs == nil {
				invs = []Invite{}
			}
			return invs, err
		},
		EndpointInviteRevoke: decoded(func(ctx context.Context, r InviteRevokeRequest) (any, error) {
			if err := s.RevokeInvite(ctx, r.ID); err != nil {
				return nil, err
			}
			return map[string]string{"revoked": r.ID}, nil
		}),
		EndpointAccountConsumers: decoded(func(ctx context.Context, r ConsumersRequest) (any, error) {
			var out ConsumersReply
			if r.Clear {
				n, err := s.ClearRecordsConsumers(ctx, r.Name)
				if err != nil {
					return nil, err
				}
				out.Cleared = n
			}
			cs, err := s.RecordsConsumers(ctx, r.Name)
			out.Consumers = cs
			if out.Consumers == nil {
				out.Consumers = []RecordsConsumer{}
			}
			return out, err
		}),
		EndpointAccountRestore: decoded(func(ctx context.Context, r RestoreRequest) (any, error) {
			if r.At.IsZero() {
				return nil, invalid("at", "say when to restore to")
			}
			return s.RestoreRecords(ctx, r.Name, r.At)
		}),
		EndpointAdminCredsIssue: decoded(func(ctx context.Context, r AdminCredsRequest) (any, error) {
			tok, a, err := s.IssueAdminCreds(ctx, r.Name, r.PublicKey)
			if err != nil {
				return nil, err
			}
			return AdminCredsReply{AdminCreds: a, JWT: tok}, nil
		}),
		EndpointAdminCredsList: func(ctx context.Context, data []byte) (any, error) {
			as, err := s.AdminCreds(ctx)
			if as == nil {
				as = []AdminCreds{}
			}
			return as, err
		},
		EndpointAdminCredsRevoke: decoded(func(ctx context.Context, r AdminCredsRequest) (any, error) {
			return s.RevokeAdminCreds(ctx, r.Name)
		}),
		EndpointAuditList: decoded(func(ctx context.Context, r AuditRequest) (any, error) {
			switch {
			case r.Last == 0:
				r.Last = 50
			case r.Last < 0 || r.Last > MaxAuditLast:
				return nil, invalid("last", "give 1 to %d entries (0 or none: 50)", MaxAuditLast)
			}
			es, err := s.Audit(ctx, r.Last)
			if es == nil {
				es = []AuditEvent{}
			}
			return es, err
		}),
	}
	for subject, h := range handlers {
		if err := add(subject, h); err != nil {
			svc.Stop()
			return nil, err
		}
	}
	return svc, nil
}

// decoded turns a handler of a request type into one of the request's
// bytes: the request is decoded, and refused in the API's words, once.
func decoded[Req any](h func(ctx context.Context, r Req) (any, error)) func(context.Context, []byte) (any, error) {
	return func(ctx context.Context, data []byte) (any, error) {
		var r Req
		if err := decode(data, &r); err != nil {
			return nil, err
		}
		return h(ctx, r)
	}
}

// withName is a handler of a request that names a person.
func withName[T any](f func(ctx context.Context, name string) (T, error)) func(context.Context, []byte) (any, error) {
	return decoded(func(ctx context.Context, r AccountRequest) (any, error) { return f(ctx, r.Name) })
}

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

// AdminClient calls the admin service. The CLI is one. The service knows
// who calls from the server, by the key of the admin creds nc uses.
type AdminClient struct {
	nc      *nats.Conn
	timeout time.Duration
}

// NewAdminClient returns a client over nc, a connection with admin creds.
func NewAdminClient(nc *nats.Conn) *AdminClient {
	return &AdminClient{nc: nc, timeout: time.Minute}
}

func (c *AdminClient) call(ctx context.Context, endpoint string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	msg := nats.NewMsg(AdminSubjectPrefix + "." + endpoint)
	msg.Data = body
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	reply, err := c.nc.RequestMsgWithContext(ctx, msg)
	if errors.Is(err, nats.ErrNoResponders) {
		return fmt.Errorf("no latch admin service answers on %s; is `latch serve` running against this server?", c.nc.ConnectedUrlRedacted())
	}
	if err != nil {
		return fmt.Errorf("admin request %s: %w", endpoint, err)
	}
	if code := reply.Header.Get(micro.ErrorCodeHeader); code != "" {
		var e errorReply
		if json.Unmarshal(reply.Data, &e) != nil || e.Message == "" {
			return fmt.Errorf("%s (%s)", reply.Header.Get(micro.ErrorHeader), code)
		}
		return ErrorOfKind(e.Kind, e.Message)
	}
	if err := json.Unmarshal(reply.Data, out); err != nil {
		return fmt.Errorf("admin request %s: unreadable reply: %w", endpoint, err)
	}
	return nil
}

// RestoreRecords sets a person's records back to what they were at at.
func (c *AdminClient) RestoreRecords(ctx context.Context, name string, at time.Time) (Restored, error) {
	var r Restored
	return r, c.call(ctx, EndpointAccountRestore, RestoreRequest{Name: name, At: at}, &r)
}

// DisconnectDevice closes a device's connections without revoking it.
func (c *AdminClient) DisconnectDevice(ctx context.Context, account, device string) (DeviceDisconnectReply, error) {
	var r DeviceDisconnectReply
	return r, c.call(ctx, EndpointDeviceDisconnect, DeviceRequest{Account: account, Device: device}, &r)
}

// Consumers lists the consumers of a person's records bucket, first
// deleting them all when clear is set.
func (c *AdminClient) Consumers(ctx context.Context, name string, clear bool) (ConsumersReply, error) {
	var r ConsumersReply
	return r, c.call(ctx, EndpointAccountConsumers, ConsumersRequest{Name: name, Clear: clear}, &r)
}

// IssueAdminCreds asks for admin creds named name for the user key pub.
func (c *AdminClient) IssueAdminCreds(ctx context.Context, name, pub string) (AdminCredsReply, error) {
	var r AdminCredsReply
	return r, c.call(ctx, EndpointAdminCredsIssue, AdminCredsRequest{Name: name, PublicKey: pub}, &r)
}

// AdminCreds lists the admin creds.
func (c *AdminClient) AdminCreds(ctx context.Context) ([]AdminCreds, error) {
	var r []AdminCreds
	return r, c.call(ctx, EndpointAdminCredsList, struct{}{}, &r)
}

// RevokeAdminCreds revokes the admin creds named name.
func (c *AdminClient) RevokeAdminCreds(ctx context.Context, name string) (AdminCreds, error) {
	var r AdminCreds
	return r, c.call(ctx, EndpointAdminCredsRevoke, AdminCredsRequest{Name: name}, &r)
}

// AddAccount creates a person account.
func (c *AdminClient) AddAccount(ctx context.Context, r AccountAddRequest) (Person, error) {
	var p Person
	return p, c.call(ctx, EndpointAccountAdd, r, &p)
}

// Accounts lists the person accounts.
func (c *AdminClient) Accounts(ctx context.Context) ([]Person, error) {
	var ps []Person
	return ps, c.call(ctx, EndpointAccountList, struct{}{}, &ps)
}

// Account shows one person account.
func (c *AdminClient) Account(ctx context.Context, name string) (AccountDetail, error) {
	var d AccountDetail
	return d, c.call(ctx, EndpointAccountShow, AccountRequest{Name: name}, &d)
}

// EditLimits changes a person's limits.
func (c *AdminClient) EditLimits(ctx context.Context, name string, e LimitsEdit) (Person, error) {
	var p Person
	return p, c.call(ctx, EndpointAccountEdit, AccountEditRequest{Name: name, LimitsEdit: e}, &p)
}

// RenameDevice gives a device a new name.
func (c *AdminClient) RenameDevice(ctx context.Context, account, device, name string) (Device, error) {
	var d Device
	return d, c.call(ctx, EndpointDeviceRename, DeviceRenameRequest{Account: account, Device: device, Name: name}, &d)
}

// DisableAccount disables a person account.
func (c *AdminClient) DisableAccount(ctx context.Context, name string) (Person, error) {
	var p Person
	return p, c.call(ctx, EndpointAccountDisable, AccountRequest{Name: name}, &p)
}

// EnableAccount enables a disabled person account.
func (c *AdminClient) EnableAccount(ctx context.Context, name string) (Person, error) {
	var p Person
	return p, c.call(ctx, EndpointAccountEnable, AccountRequest{Name: name}, &p)
}

// DeleteAccount deletes a person account and its data.
func (c *AdminClient) DeleteAccount(ctx context.Context, name string) (Person, error) {
	var p Person
	return p, c.call(ctx, EndpointAccountDelete, AccountRequest{Name: name}, &p)
}

// IssueDevice issues a device with a server-made key.
func (c *AdminClient) IssueDevice(ctx context.Context, r DeviceIssueRequest) (DeviceIssueReply, error) {
	var out DeviceIssueReply
	return out, c.call(ctx, EndpointDeviceIssue, r, &out)
}

// Devices lists the devices of a person account.
func (c *AdminClient) Devices(ctx context.Context, account string) ([]Device, error) {
	var ds []Device
	return ds, c.call(ctx, EndpointDeviceList, DeviceRequest{Account: account}, &ds)
}

// RevokeDevice revokes a device by name or public key.
func (c *AdminClient) RevokeDevice(ctx context.Context, account, device string) (DeviceRevokeReply, error) {
	var out DeviceRevokeReply
	return out, c.call(ctx, EndpointDeviceRevoke, DeviceRequest{Account: account, Device: device}, &out)
}

// ApproveDevice approves a device's pending enrollment for an account, by
// the user code the device shows.
func (c *AdminClient) ApproveDevice(ctx context.Context, account, code string) (Device, error) {
	var d Device
	return d, c.call(ctx, EndpointDeviceApprove, DeviceApproveRequest{Account: account, Code: code}, &d)
}

// CreateInvite makes an invite link.
func (c *AdminClient) CreateInvite(ctx context.Context, req InviteCreateRequest) (InviteCreateReply, error) {
	var out InviteCreateReply
	return out, c.call(ctx, EndpointInviteCreate, req, &out)
}

// Invites lists the invites that still work.
func (c *AdminClient) Invites(ctx context.Context) ([]Invite, error) {
	var out []Invite
	return out, c.call(ctx, EndpointInviteList, struct{}{}, &out)
}

// RevokeInvite makes an invite stop working.
func (c *AdminClient) RevokeInvite(ctx context.Context, id string) error {
	var out map[string]string
	return c.call(ctx, EndpointInviteRevoke, InviteRevokeRequest{ID: id}, &out)
}

// Audit returns the last entries of the audit trail.
func (c *AdminClient) Audit(ctx context.Context, last int) ([]AuditEvent, error) {
	var es []AuditEvent
	return es, c.call(ctx, EndpointAuditList, AuditRequest{Last: last}, &es)
}
