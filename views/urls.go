package views

import "net/url"

// The paths of the pages' actions, built here only; web's routes.go
// serves them. Names and keys in them are escaped.

// DevicePath is an action on a device: "revoke", "disconnect".
func DevicePath(pub, action string) string {
	return "/devices/" + url.PathEscape(pub) + "/" + action
}

// PasskeyPath is an action on a passkey: "rename", "remove".
func PasskeyPath(id, action string) string {
	return "/passkeys/" + url.PathEscape(id) + "/" + action
}

// SessionEndPath ends a web session.
func SessionEndPath(id string) string { return "/sessions/" + url.PathEscape(id) + "/end" }

// EnrollPath is an action on an enrollment: "approve", "deny".
func EnrollPath(userCode, action string) string {
	return "/enroll/" + url.PathEscape(userCode) + "/" + action
}

// PersonPath is an admin's action on a person: "disable", "enable",
// "delete", "invite".
func PersonPath(name, action string) string {
	return "/admin/persons/" + url.PathEscape(name) + "/" + action
}

// InviteRevokePath revokes an invite.
func InviteRevokePath(id string) string { return "/admin/invites/" + url.PathEscape(id) + "/revoke" }

// InvitePath is an invite's link, under the public URL.
func InvitePath(token string) string { return "/invite/" + token }
