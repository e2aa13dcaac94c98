package accounts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/latch-dev/latch/operator"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// Endpoint describes one endpoint of the admin service: its subject under
// operator.AdminSubjectPrefix, the request it takes and the reply it gives. The
// service serves it with a handler of exactly those types (ServeAdmin) and
// a client calls it with Call, so the two cannot disagree on either: a new
// admin command is one descriptor here, one handler and one CLI command.
type Endpoint[Req, Rep any] string

// NoRequest is the request of an endpoint that takes none.
type NoRequest struct{}

// The admin service's endpoints.
const (
	EndpointAccountAdd       Endpoint[AccountAddRequest, Person]              = "account.add"
	EndpointAccountList      Endpoint[NoRequest, []Person]                    = "account.ls"
	EndpointAccountShow      Endpoint[AccountRequest, AccountDetail]          = "account.show"
	EndpointAccountEdit      Endpoint[AccountEditRequest, Person]             = "account.edit"
	EndpointAccountDisable   Endpoint[AccountRequest, Person]                 = "account.disable"
	EndpointAccountEnable    Endpoint[AccountRequest, Person]                 = "account.enable"
	EndpointAccountDelete    Endpoint[AccountRequest, Person]                 = "account.delete"
	EndpointAccountConsumers Endpoint[ConsumersRequest, ConsumersReply]       = "account.consumers"
	EndpointAccountRestore   Endpoint[RestoreRequest, Restored]               = "account.restore"
	EndpointDeviceIssue      Endpoint[DeviceIssueRequest, DeviceIssueReply]   = "device.issue"
	EndpointDeviceList       Endpoint[DeviceRequest, []Device]                = "device.ls"
	EndpointDeviceRevoke     Endpoint[DeviceRequest, DeviceRevokeReply]       = "device.revoke"
	EndpointDeviceRename     Endpoint[DeviceRenameRequest, Device]            = "device.rename"
	EndpointDeviceDisconnect Endpoint[DeviceRequest, DeviceDisconnectReply]   = "device.disconnect"
	EndpointDeviceApprove    Endpoint[DeviceApproveRequest, Device]           = "device.approve"
	EndpointInviteCreate     Endpoint[InviteCreateRequest, InviteCreateReply] = "invite.create"
	EndpointInviteList       Endpoint[NoRequest, []Invite]                    = "invite.ls"
	EndpointInviteRevoke     Endpoint[InviteRevokeRequest, InviteRevokeReply] = "invite.revoke"
	EndpointAuditList        Endpoint[AuditRequest, []AuditEvent]             = "audit.ls"
	EndpointAdminCredsIssue  Endpoint[AdminCredsRequest, AdminCredsReply]     = "admin.creds.issue"
	EndpointAdminCredsList   Endpoint[NoRequest, []AdminCreds]                = "admin.creds.ls"
	EndpointAdminCredsRevoke Endpoint[AdminCredsRequest, AdminCreds]          = "admin.creds.revoke"
	EndpointClusterStatus    Endpoint[NoRequest, ClusterStatus]               = "cluster.status"
	EndpointClusterRepair    Endpoint[NoRequest, ClusterRepairReply]          = "cluster.repair"
	EndpointClusterRebalance Endpoint[NoRequest, RebalanceResult]             = "cluster.rebalance"
	EndpointReleaseUpload    Endpoint[ReleaseChunk, ReleaseChunkReply]        = "release.upload"
	EndpointReleasePublish   Endpoint[ReleasePublishRequest, Release]         = "release.publish"
	EndpointReleaseList      Endpoint[NoRequest, []Release]                   = "release.ls"
	EndpointReleaseYank      Endpoint[ReleaseYankRequest, []Release]          = "release.yank"
)

// Subject is where the endpoint listens.
func (e Endpoint[Req, Rep]) Subject() string { return operator.AdminSubjectPrefix + "." + string(e) }

// Call sends req to the endpoint through c and decodes its reply; an
// error the service answered comes back with its kind (Kind, errors.Is).
func (e Endpoint[Req, Rep]) Call(ctx context.Context, c *AdminClient, req Req) (Rep, error) {
	var out Rep
	return out, c.call(ctx, string(e), req, &out)
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

// InviteRevokeReply names the invite revoked.
type InviteRevokeReply struct {
	Revoked string `json:"revoked"`
}

// AuditRequest asks for the last entries of the audit trail.
type AuditRequest struct {
	Last int `json:"last"`
}

// errorReply is the body of an error response.
type errorReply struct {
	Kind    ErrorKind `json:"kind"`
	Message string    `json:"message"`
}

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
	msg := nats.NewMsg(operator.AdminSubjectPrefix + "." + endpoint)
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
