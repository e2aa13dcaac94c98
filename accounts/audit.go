package accounts

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"github.com/nats-io/nuid"
)

// Action is what an audit event says was done.
type Action string

// Actions written to the audit trail.
const (
	ActionAccountCreate  Action = "account.create"
	ActionAccountDisable Action = "account.disable"
	ActionAccountEnable  Action = "account.enable"
	ActionAccountDelete  Action = "account.delete"
	// ActionAccountTemplate is a person account's device permissions
	// brought up to date with a newer latch.
	ActionAccountTemplate  Action = "account.template"
	ActionConsumersClear   Action = "account.consumers_clear"
	ActionRecordsRestore   Action = "records.restore"
	ActionDeviceIssue      Action = "device.issue"
	ActionDeviceRevoke     Action = "device.revoke"
	ActionDeviceRename     Action = "device.rename"
	ActionDeviceDisconnect Action = "device.disconnect"

	ActionPersonLogin         Action = "person.login"
	ActionSessionsEnd         Action = "person.sessions_end"
	ActionPasskeyAdd          Action = "passkey.add"
	ActionPasskeyRename       Action = "passkey.rename"
	ActionPasskeyRemove       Action = "passkey.remove"
	ActionPasskeyCloneWarning Action = "passkey.clone_warning"
	ActionEnrollApprove       Action = "enroll.approve"
	ActionEnrollDeny          Action = "enroll.deny"
	ActionInviteCreate        Action = "invite.create"
	ActionInviteConsume       Action = "invite.consume"
	ActionInviteRevoke        Action = "invite.revoke"
	ActionAdminCredsIssue     Action = "admin_creds.issue"
	ActionAdminCredsRevoke    Action = "admin_creds.revoke"
	// ActionAccountDrift is a node found enforcing a JWT of an account
	// that is not latch's record of it; ActionAccountRepair is the record
	// pushed again over it.
	ActionAccountDrift  Action = "account.drift"
	ActionAccountRepair Action = "account.repair"
	// ActionRecordsReplicas is a person's records moved to the number of
	// replicas latch runs with (a deployment that grew to three nodes).
	ActionRecordsReplicas Action = "records.replicas"
	// ActionRecordsMoveIn is a person's records moved into a cluster from
	// the data of a node that ran alone.
	ActionRecordsMoveIn Action = "records.move-in"
	// ActionReleasePublish and ActionReleaseYank are a release published
	// and withdrawn, by an admin.
	ActionReleasePublish Action = "release.publish"
	ActionReleaseYank    Action = "release.yank"
)

// AuditEvent is one entry of the audit trail.
type AuditEvent struct {
	Time  time.Time `json:"time"`
	Actor string    `json:"actor"`
	// ActorKey is the NATS user key of an admin who called the admin
	// service, as the server reported it.
	ActorKey    string `json:"actor_key,omitempty"`
	From        string `json:"from,omitempty"`
	Action      Action `json:"action"`
	Account     string `json:"account,omitempty"`
	AccountName string `json:"account_name,omitempty"`
	Device      string `json:"device,omitempty"`
	DeviceName  string `json:"device_name,omitempty"`
	Detail      string `json:"detail,omitempty"`
}

// Actor is who asks for a change, and from where.
type Actor struct {
	Name string
	From string
	// Key is the caller's NATS user key, for a call over NATS.
	Key string
}

type actorKey struct{}

// WithActor returns a context that names who is acting, for the audit trail.
func WithActor(ctx context.Context, a Actor) context.Context {
	return context.WithValue(ctx, actorKey{}, a)
}

func actorOf(ctx context.Context) Actor {
	if a, ok := ctx.Value(actorKey{}).(Actor); ok {
		return a
	}
	return Actor{Name: "latch"}
}

// audit appends an event to the audit stream.
func (s *Service) audit(ctx context.Context, e AuditEvent) error {
	a := actorOf(ctx)
	e.Time = time.Now().UTC()
	e.Actor, e.From, e.ActorKey = a.Name, a.From, a.Key
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	// In a cluster the audit stream may be between leaders for a few
	// seconds (a node died): the event is sent again, under one message
	// ID, so that a first try that was stored but not acknowledged is
	// not stored twice (the stream's duplicate window).
	id := nuid.Next()
	return steadily(ctx, true, func(ctx context.Context) error {
		_, err := s.js.Publish(ctx, auditEventSubject(e.Account, e.Action), b, jetstream.WithMsgID(id))
		return err
	})
}

// auditEventSubject is where an event of an account goes: latch.audit.
// <account public key, or "_" for none>.<action>, so that Changes can
// follow one account.
func auditEventSubject(account string, action Action) string {
	if account == "" {
		account = "_"
	}
	return auditSubject + "." + account + "." + string(action)
}

// changesBuffer is how many changes a slow follower may fall behind
// before it loses some; a lost change leaves a page's row stale until the
// next reload.
const changesBuffer = 64

// Changes follows the changes of one person account (by public key) from
// now on, wherever they are made: in this process, another, or another
// node, since each comes as its audit event over NATS. The channel is
// closed when ctx ends or latch's connection closes. A follower that does
// not keep up loses changes rather than holding anyone up.
func (s *Service) Changes(ctx context.Context, account string) (<-chan AuditEvent, error) {
	if !nkeys.IsValidPublicAccountKey(account) {
		return nil, invalid("account", "not an account public key")
	}
	ch := make(chan AuditEvent, changesBuffer)
	var mu sync.Mutex
	closed := false
	sub, err := s.cfg.App.Subscribe(auditEventSubject(account, ">"), func(m *nats.Msg) {
		var e AuditEvent
		if json.Unmarshal(m.Data, &e) != nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if closed {
			return
		}
		select {
		case ch <- e:
		default:
		}
	})
	if err != nil {
		return nil, fmt.Errorf("follow the changes of %s: %w", account, err)
	}
	stop := func() {
		sub.Unsubscribe()
		mu.Lock()
		defer mu.Unlock()
		if !closed {
			closed = true
			close(ch)
		}
	}
	sub.SetClosedHandler(func(string) { stop() })
	go func() {
		<-ctx.Done()
		stop()
	}()
	return ch, nil
}

// Audit returns the last n entries of the audit trail, newest last.
func (s *Service) Audit(ctx context.Context, n int) ([]AuditEvent, error) {
	st, err := s.js.Stream(ctx, AuditStream)
	if err != nil {
		return nil, err
	}
	last := st.CachedInfo().State.LastSeq
	if last == 0 || n <= 0 {
		return nil, nil
	}
	first := uint64(1)
	if last > uint64(n) {
		first = last - uint64(n) + 1
	}
	var out []AuditEvent
	for seq := first; seq <= last; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		var e AuditEvent
		if json.Unmarshal(m.Data, &e) == nil {
			out = append(out, e)
		}
	}
	return out, nil
}

// auditAfter records an action that has already taken effect; a failure
// to record it is logged, not returned, since the action stands.
func (s *Service) auditAfter(ctx context.Context, e AuditEvent) {
	if err := s.audit(ctx, e); err != nil {
		s.log.Error("audit entry lost", "action", e.Action, "account", e.Account, "device", e.Device, "err", err)
	}
}
