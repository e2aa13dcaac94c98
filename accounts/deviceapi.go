package accounts

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nkeys"
)

// The device API's endpoints. A device sends a request to
// latch.device.<its user key>.api.<endpoint> from its own account; the
// account imports the subjects from LATCH (operator.DeviceAPISubject).
const (
	// DeviceEndpointRecordsDelete deletes a record, also when the
	// records bucket is too full for the device to write even a delete.
	DeviceEndpointRecordsDelete = "records.delete"
	// DeviceEndpointReleasesLatest answers the newest client release for
	// an os and arch (ReleasesLatestRequest): a device asks when it
	// connects, then hears of new ones on latch.releases.<os>.<arch>.
	DeviceEndpointReleasesLatest = "releases.latest"
)

// ReleasesLatestRequest names a device's platform.
type ReleasesLatestRequest struct {
	OS   string `json:"os"`
	Arch string `json:"arch"`
}

// DeviceAPIRequestSubject is the subject a device sends a request for
// endpoint to.
func DeviceAPIRequestSubject(device, endpoint string) string {
	return "latch.device." + device + ".api." + endpoint
}

// RecordsDeleteRequest names the record to delete.
type RecordsDeleteRequest struct {
	Key string `json:"key"`
}

// RecordsDeleteReply is the delete's revision.
type RecordsDeleteReply struct {
	Key      string `json:"key"`
	Revision uint64 `json:"revision"`
}

// deviceCaller is who sent a device API request: a device, by its
// account and user key as the server reported them in Nats-Request-Info,
// which must match the key in the subject.
type deviceCaller struct {
	Person Person
	Device Device
	Host   string
}

// deviceCallerOf checks a device API request's caller: a known device of
// an active person, not revoked, asking under its own key.
func (s *Service) deviceCallerOf(ctx context.Context, subject, info string) (deviceCaller, error) {
	var ci struct {
		Account string `json:"acc"`
		User    string `json:"user"`
		Host    string `json:"host"`
	}
	refused := errorf(ErrForbidden, "the device API answers enrolled devices only, each under its own key: latch.device.<the device's user key>.api.<endpoint>")
	if info == "" || json.Unmarshal([]byte(info), &ci) != nil ||
		!nkeys.IsValidPublicAccountKey(ci.Account) || !nkeys.IsValidPublicUserKey(ci.User) {
		return deviceCaller{}, refused
	}
	if tok := strings.Split(subject, "."); len(tok) < 3 || tok[2] != ci.User {
		return deviceCaller{}, refused
	}
	var d Device
	if _, err := getJSON(ctx, s.devices, deviceKey(ci.Account, ci.User), &d); err != nil {
		if isNotFound(err) {
			return deviceCaller{}, refused
		}
		return deviceCaller{}, err
	}
	if d.Revoked() {
		return deviceCaller{}, revokedError(d)
	}
	p, err := s.Person(ctx, d.AccountName)
	if err != nil || p.Account != ci.Account {
		return deviceCaller{}, refused
	}
	if p.Status != StatusActive {
		return deviceCaller{}, errorf(ErrDisabled, "account %q is %s", p.Name, p.Status)
	}
	return deviceCaller{Person: p, Device: d, Host: ci.Host}, nil
}

// ServeDeviceAPI registers the device API on nc, a LATCH account
// connection.
func (s *Service) ServeDeviceAPI(nc *nats.Conn, version string) (micro.Service, error) {
	svc, err := micro.AddService(nc, micro.Config{
		Name:        "latch-device",
		Version:     version,
		Description: "what a device asks latch for",
	})
	if err != nil {
		return nil, err
	}
	handlers := map[string]func(ctx context.Context, who deviceCaller, data []byte) (any, error){
		DeviceEndpointRecordsDelete: func(ctx context.Context, who deviceCaller, data []byte) (any, error) {
			var r RecordsDeleteRequest
			if err := decode(data, &r); err != nil {
				return nil, err
			}
			rec, err := s.deleteRecord(ctx, who.Person, r.Key)
			if err != nil {
				return nil, err
			}
			return RecordsDeleteReply{Key: rec.Key, Revision: rec.Revision}, nil
		},
		DeviceEndpointReleasesLatest: func(ctx context.Context, _ deviceCaller, data []byte) (any, error) {
			var r ReleasesLatestRequest
			if err := decode(data, &r); err != nil {
				return nil, err
			}
			if !platformName.MatchString(r.OS) || !platformName.MatchString(r.Arch) {
				return nil, invalid("os", "name the device's os and arch, such as linux and amd64")
			}
			return s.LatestRelease(ctx, ReleaseClient, r.OS, r.Arch)
		},
	}
	for endpoint, h := range handlers {
		subject := DeviceAPIRequestSubject("*", endpoint)
		err := svc.AddEndpoint("latch_device_"+subjectName(endpoint), micro.HandlerFunc(func(req micro.Request) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			who, err := s.deviceCallerOf(ctx, req.Subject(), req.Headers().Get(requestInfoHeader))
			var out any
			if err == nil {
				ctx = WithActor(ctx, Actor{Name: "device:" + who.Device.Name, Key: who.Device.PublicKey, From: who.Host})
				out, err = h(ctx, who, req.Data())
			}
			if err := respond(req, out, err); err != nil {
				s.log.Warn("device API reply lost", "endpoint", endpoint, "err", err)
			}
		}), micro.WithEndpointSubject(subject))
		if err != nil {
			svc.Stop()
			return nil, err
		}
	}
	return svc, nil
}
