package accounts

import (
	"fmt"
	"slices"
	"time"

	"github.com/latch-dev/latch/operator"
	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
)

// RecordsBucket is the KV bucket of a person account that devices sync.
const RecordsBucket = "records"

// DeviceRole is the role of a person account's scoped device signing key.
const DeviceRole = "device"

// DeviceTemplate is what every device may do. It is the template of the
// person account's scoped device signing key, so the server applies it to
// every device user whatever the user JWT says, and a device user carries
// no permissions of their own. The person account is the isolation
// boundary, which is why plain _INBOX.> is kept: every NATS client works
// unchanged.
//
// It allows exactly what the official clients' KV APIs use on a bucket
// they may read and write (from each client's KV code: nats.go's jetstream
// and legacy packages, natscli, nats.js v3 @nats-io/kv and v2 nats,
// nats.py, async-nats, nats.net, nats.java), and nothing that creates,
// updates, deletes or purges a stream. cmd/latch's interop tests drive
// natscli and nats.js v2 and v3 with a device's creds.
//
// deviceSubs caps the subscriptions of each device connection (0 is
// DefaultLimits().DeviceSubs): without a cap one connection could hold
// hundreds of thousands and with them the server's memory.
func DeviceTemplate(deviceSubs int64) jwt.UserPermissionLimits {
	const stream = "KV_" + RecordsBucket
	if deviceSubs <= 0 {
		deviceSubs = DefaultLimits().DeviceSubs
	}
	var t jwt.UserPermissionLimits
	t.NatsLimits = jwt.NatsLimits{Subs: deviceSubs, Data: jwt.NoLimit, Payload: jwt.NoLimit}
	t.Pub.Allow.Add(
		// Put, create, update, delete, purge of a key: every client.
		"$KV."+RecordsBucket+".>",
		// Open and status: every client (nats.js v3's open sends nothing).
		"$JS.API.STREAM.INFO."+stream,
		// Get: direct get with the key in the subject (nats.go, natscli,
		// nats.js v2, nats.py, async-nats, nats.java), with a JSON body
		// (nats.net's default, and every client's get by revision).
		"$JS.API.DIRECT.GET."+stream,
		"$JS.API.DIRECT.GET."+stream+".>",
		// Get through the stream API: nats.js v3's default open() and v2's
		// bindOnly, which do not use direct get unless asked.
		"$JS.API.STREAM.MSG.GET."+stream,
		// Watch, keys, history: an ephemeral ordered consumer. Named, with
		// the filter in the subject: nats.go, natscli, nats.js v3, v2's
		// watch, nats.net, nats.java. Unnamed, the form without a filter:
		// nats.js v2's keys and history and its resets, nats.py,
		// async-nats, and any client with several filters.
		"$JS.API.CONSUMER.CREATE."+stream,
		"$JS.API.CONSUMER.CREATE."+stream+".>",
		// The consumer's info after creating it: nats.js v3's keys,
		// nats.py, nats.java.
		"$JS.API.CONSUMER.INFO."+stream+".*",
		// Stopping a watch, and an ordered consumer's reset: nats.go,
		// natscli, nats.js v3.
		"$JS.API.CONSUMER.DELETE."+stream+".*",
		// Flow control of the ordered consumers: every client.
		"$JS.FC."+stream+".>",
		// Account info and stream listing, read-only: nats.js v2's check
		// of the JetStream API, `nats kv ls`, `nats account info`.
		"$JS.API.INFO",
		"$JS.API.STREAM.NAMES",
		"$JS.API.STREAM.LIST",
		"$SYS.REQ.USER.INFO",
		// The device's own channel.
		"latch.device.{{subject()}}.>",
	)
	t.Sub.Allow.Add(
		"_INBOX.>",
		"latch.releases.>",
		"latch.device.{{subject()}}.>",
	)
	return t
}

// latchImports are a person account's imports from LATCH: the device API
// (a service, shared so that latch learns the caller) and the release
// announcements (a stream).
func latchImports(appPub string) []*jwt.Import {
	return []*jwt.Import{
		{Name: "latch device api", Subject: operator.DeviceAPISubject, Account: appPub, Type: jwt.Service, Share: true},
		{Name: "latch releases", Subject: operator.ReleaseSubjectPrefix + ".>", Account: appPub, Type: jwt.Stream},
	}
}

// hasLatchImports reports whether an account imports from appPub all
// that latchImports says.
func hasLatchImports(ac *jwt.AccountClaims, appPub string) bool {
	for _, want := range latchImports(appPub) {
		if !slices.ContainsFunc(ac.Imports, func(im *jwt.Import) bool {
			return im.Subject == want.Subject && im.Account == appPub && im.Type == want.Type && im.Share == want.Share
		}) {
			return false
		}
	}
	return true
}

// setLatchImports gives an account latchImports, replacing any import of
// their subjects.
func setLatchImports(ac *jwt.AccountClaims, appPub string) {
	want := latchImports(appPub)
	var kept jwt.Imports
	for _, im := range ac.Imports {
		if !slices.ContainsFunc(want, func(w *jwt.Import) bool { return w.Subject == im.Subject }) {
			kept = append(kept, im)
		}
	}
	ac.Imports = append(kept, want...)
}

// Limits are the quotas of a person account.
type Limits struct {
	// Disk is the JetStream file storage, in bytes, for the records bucket.
	Disk int64 `json:"disk"`
	// Memory is the JetStream memory storage, in bytes; KV watchers use
	// ordered consumers, which keep their state in memory.
	Memory int64 `json:"memory"`
	// Conns is the most connections the account may have at once.
	Conns int64 `json:"conns"`
	// Payload is the largest message, in bytes.
	Payload int64 `json:"payload"`
	// Consumers is the most JetStream consumers (watchers) at once.
	Consumers int64 `json:"consumers"`
	// Subs is the most subscriptions of any one connection of the
	// account (nats-server applies an account's limit to each of its
	// connections), the server's own included, and DeviceSubs of one
	// device connection; 0 is DefaultLimits'. DeviceSubs is the server's
	// (--device-subs), the same for every person.
	Subs       int64 `json:"subs,omitempty"`
	DeviceSubs int64 `json:"device_subs,omitempty"`
}

// DeleteReserve is the room above a person's disk quota that only the
// server uses. A delete is a write too: JetStream refuses it on a bucket
// at its byte limit, so a person whose records are full could not delete
// anything. When a delete is refused for room, the server lifts the
// bucket's limit by this much for the moment of the delete (a purge,
// which removes the key's earlier revisions and their room with them).
func DeleteReserve(disk int64) int64 {
	return min(max(disk/16, 16<<10), 1<<20)
}

// tierDisk is the disk a person's account may use: the records bucket
// and its history, each up to the quota, and the delete reserve.
func tierDisk(disk int64) int64 { return 2*disk + DeleteReserve(disk) }

// DefaultLimits are the quotas of a person account unless told otherwise;
// each call gives a copy of its own.
func DefaultLimits() Limits { return defaultLimits }

var defaultLimits = Limits{
	Disk:       64 << 20,
	Memory:     1 << 20,
	Conns:      64,
	Payload:    1 << 20,
	Consumers:  256,
	Subs:       10_000,
	DeviceSubs: 1_000,
}

// ConsumerIdle is how long a consumer of a records bucket may go unused
// before the server removes it, durable or not (the stream's consumer
// limit): a device cannot leave consumers behind, after its revocation
// or ever. Clients' ordered consumers ask for at most 5 minutes (nats.js
// v3, nats.py); a consumer that asks for more than this is refused.
const ConsumerIdle = 15 * time.Minute

// apply sets the limits on account claims, with the tiers of a person's
// records at replicas (setTiers).
func (l Limits) apply(ac *jwt.AccountClaims, replicas int) {
	ac.Limits.Conn = l.Conns
	ac.Limits.LeafNodeConn = 0
	ac.Limits.Payload = l.Payload
	ac.Limits.Subs = l.Subs
	if l.Subs <= 0 {
		ac.Limits.Subs = DefaultLimits().Subs
	}
	ac.Limits.Data = jwt.NoLimit
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{}
	ac.Limits.JetStreamTieredLimits = nil
	setTiers(ac, l.Disk, l.Memory, l.Consumers, replicas)
}

// tierNames are the JetStream tiers of a person account whose records
// have replicas: R1, where the watchers' ordered consumers are (they are
// R1 memory consumers whatever their stream), and the records' own.
func tierNames(replicas int) []string {
	if replicas <= 1 {
		return []string{"R1"}
	}
	return []string{"R1", fmt.Sprintf("R%d", replicas)}
}

// setTiers sets the JetStream tiers of a person account: each holds the
// records bucket and its history, each up to disk, and the room a delete
// on a full bucket takes. A tier's limit is per replica, so an R3 bucket
// has its quota on each node. Two tiers do not give twice the room: the
// server makes the account's only streams (a device cannot make one), at
// one replica count, and R1 is for consumers.
func setTiers(ac *jwt.AccountClaims, disk, memory, consumers int64, replicas int) {
	if ac.Limits.JetStreamTieredLimits == nil {
		ac.Limits.JetStreamTieredLimits = jwt.JetStreamTieredLimits{}
	}
	for _, name := range tierNames(replicas) {
		ac.Limits.JetStreamTieredLimits[name] = jwt.JetStreamLimits{
			DiskStorage:   tierDisk(disk),
			MemoryStorage: memory,
			Streams:       4,
			Consumer:      consumers,
			MaxAckPending: jwt.NoLimit,
		}
	}
}

// tiersShort reports whether an account lacks a tier of tierNames, or has
// one with less disk than disk's.
func tiersShort(ac *jwt.AccountClaims, disk int64, replicas int) bool {
	for _, name := range tierNames(replicas) {
		if t, ok := ac.Limits.JetStreamTieredLimits[name]; !ok || t.DiskStorage < tierDisk(disk) {
			return true
		}
	}
	return false
}

// personKeys are the keys of a new person account.
type personKeys struct {
	account nkeys.KeyPair // identity: signs nothing after creation and is discarded
	device  nkeys.KeyPair // scoped: signs device users
	service nkeys.KeyPair // unscoped: signs the server's own short-lived users
}

func newPersonKeys() personKeys {
	a, _ := nkeys.CreateAccount()
	d, _ := nkeys.CreateAccount()
	s, _ := nkeys.CreateAccount()
	return personKeys{account: a, device: d, service: s}
}

// personAccountClaims are the claims of a new person account; appPub is
// LATCH's public key, the account of the device API.
func personAccountClaims(name string, k personKeys, l Limits, appPub string, replicas int) *jwt.AccountClaims {
	pub, _ := k.account.PublicKey()
	devPub, _ := k.device.PublicKey()
	svcPub, _ := k.service.PublicKey()
	ac := jwt.NewAccountClaims(pub)
	ac.Name = name
	ac.Tags.Add("latch:person")
	scope := jwt.NewUserScope()
	scope.Key = devPub
	scope.Role = DeviceRole
	scope.Description = "devices of " + name
	scope.Template = DeviceTemplate(l.DeviceSubs)
	ac.SigningKeys.AddScopedSigner(scope)
	ac.SigningKeys.Add(svcPub)
	l.apply(ac, replicas)
	if appPub != "" {
		setLatchImports(ac, appPub)
	}
	return ac
}

// deviceUserClaims are a device user's claims: no permissions of their own
// (the scoped key's template decides), signed for the account.
func deviceUserClaims(account, devicePub, name string, expires time.Time) *jwt.UserClaims {
	uc := jwt.NewUserClaims(devicePub)
	uc.Name = name
	uc.IssuerAccount = account
	// A scoped signing key refuses users that carry permissions or limits.
	uc.UserPermissionLimits = jwt.UserPermissionLimits{}
	if !expires.IsZero() {
		uc.Expires = expires.Unix()
	}
	return uc
}

// serviceUserJWT mints a short-lived user of a person account signed by
// its service key, for the server's own work in that account.
func serviceUserJWT(account string, service nkeys.KeyPair, ttl time.Duration) (string, []byte, error) {
	return operator.NewUser(service, account, "latch-service", nil, time.Now().Add(ttl))
}
