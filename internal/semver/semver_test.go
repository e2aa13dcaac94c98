package semver

import "testing"

func TestCompare(t *testing.T) {
	// In order, as Semantic Versioning 2.0 §11 lists them.
	ordered := []string{"1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2",
		"1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.2.0", "1.10.0", "2.0.0"}
	for i := range ordered {
		for j := range ordered {
			a, err := Parse(ordered[i])
			if err != nil {
				t.Fatal(err)
			}
			b, _ := Parse(ordered[j])
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got := Compare(a, b); got != want {
				t.Errorf("Compare(%s, %s) = %d, want %d", ordered[i], ordered[j], got, want)
			}
		}
	}
	if v, err := Parse("v1.4.0"); err != nil || v.String() != "1.4.0" {
		t.Errorf("Parse(v1.4.0) = %v, %v", v, err)
	}
	for _, bad := range []string{"", "1", "1.2", "1.2.3.4", "01.2.3", "1.2.x", "1.2.3-", "1.2.3-a..b", "1.2.3+build", "-1.2.3", "1.2.3-ü"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
	if !Less("1.0.0", "1.0.1") || Less("1.0.1", "1.0.0") || !Less("junk", "1.0.0") {
		t.Error("Less")
	}
}
