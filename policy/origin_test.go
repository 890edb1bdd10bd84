package policy

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
)

// normalizeOriginTests is shared with FuzzNormalizeOrigin as its seed corpus.
var normalizeOriginTests = []struct {
	name string
	in   string
	want string // "" when an error is expected
	// wantReason is a substring of the error's Reason.
	wantReason string
}{
	{name: "exact https", in: "https://app.example.com", want: "https://app.example.com"},
	{name: "exact localhost with port", in: "http://localhost:3000", want: "http://localhost:3000"},
	{name: "upper case scheme and host", in: "HTTPS://App.Example.COM", want: "https://app.example.com"},
	{name: "https default port dropped", in: "https://app.example.com:443", want: "https://app.example.com"},
	{name: "http default port dropped", in: "http://app.example.com:80", want: "http://app.example.com"},
	{name: "http on 443 keeps the port", in: "http://app.example.com:443", want: "http://app.example.com:443"},
	{name: "non-default port kept", in: "https://app.example.com:8443", want: "https://app.example.com:8443"},
	{name: "IDN to punycode", in: "https://bücher.example", want: "https://xn--bcher-kva.example"},
	{name: "IDN upper case", in: "https://BÜCHER.example", want: "https://xn--bcher-kva.example"},
	{name: "punycode kept", in: "https://xn--bcher-kva.example", want: "https://xn--bcher-kva.example"},
	{name: "punycode upper case", in: "https://XN--BCHER-KVA.example", want: "https://xn--bcher-kva.example"},
	{name: "fullwidth letters mapped", in: "https://ｅｘａｍｐｌｅ.com", want: "https://example.com"},
	{name: "double hyphen inside a label", in: "https://r3---sn-abc.example.com", want: "https://r3---sn-abc.example.com"},
	{name: "single label host", in: "http://intranet", want: "http://intranet"},
	{name: "subdomain wildcard", in: "https://*.example.com", want: "https://*.example.com"},
	{name: "subdomain wildcard IDN", in: "https://*.Bücher.example", want: "https://*.xn--bcher-kva.example"},
	{name: "subdomain wildcard with port", in: "https://*.example.com:8443", want: "https://*.example.com:8443"},
	{name: "subdomain wildcard default port", in: "https://*.example.com:443", want: "https://*.example.com"},
	{name: "subdomain wildcard under a TLD", in: "https://*.com", want: "https://*.com"},
	{name: "port wildcard", in: "http://localhost:*", want: "http://localhost:*"},
	{name: "port wildcard IPv6", in: "http://[::1]:*", want: "http://[::1]:*"},
	{name: "port wildcard IPv4", in: "http://127.0.0.1:*", want: "http://127.0.0.1:*"},
	{name: "any", in: "*", want: "*"},
	{name: "null", in: "null", want: "null"},
	{name: "null upper case", in: "NULL", want: "null"},
	{name: "IPv4", in: "http://127.0.0.1:8080", want: "http://127.0.0.1:8080"},
	{name: "IPv6 loopback", in: "http://[::1]", want: "http://[::1]"},
	{name: "IPv6 with port", in: "https://[2001:db8::1]:8443", want: "https://[2001:db8::1]:8443"},
	{name: "IPv6 upper case hex", in: "http://[2001:DB8::1]", want: "http://[2001:db8::1]"},
	{name: "IPv6 default port dropped", in: "https://[2001:db8::1]:443", want: "https://[2001:db8::1]"},

	{name: "empty", in: "", wantReason: "empty"},
	{name: "no scheme", in: "app.example.com", wantReason: "no scheme"},
	{name: "unsupported scheme", in: "ftp://example.com", wantReason: "not supported"},
	{name: "extension scheme", in: "chrome-extension://abcdefghijklmnopabcdefghijklmnop", want: "chrome-extension://abcdefghijklmnopabcdefghijklmnop"},
	{name: "extension scheme upper case scheme", in: "Moz-Extension://0f1e2d3c-aaaa-bbbb-cccc-0123456789ab", want: "moz-extension://0f1e2d3c-aaaa-bbbb-cccc-0123456789ab"},
	{name: "extension host kept as written", in: "safari-web-extension://0F1E2D3C-AAAA", want: "safari-web-extension://0F1E2D3C-AAAA"},
	{name: "app shell", in: "capacitor://localhost", want: "capacitor://localhost"},
	{name: "app shell tauri", in: "tauri://localhost", want: "tauri://localhost"},
	{name: "other scheme with path", in: "chrome-extension://abc/def", wantReason: "more than scheme://host"},
	{name: "other scheme wildcard", in: "chrome-extension://*", wantReason: "wildcards apply only"},
	{name: "other scheme empty host", in: "capacitor://", wantReason: "no host"},
	{name: "file scheme", in: "file://host", wantReason: "not supported"},
	{name: "bad scheme", in: "1ab://host", wantReason: "not supported"},
	{name: "wildcard scheme", in: "*://example.com", wantReason: "scheme cannot be a wildcard"},
	{name: "path", in: "https://app.example.com/api", wantReason: "has a path"},
	{name: "trailing slash", in: "https://app.example.com/", wantReason: "ends with a slash"},
	{name: "backslash path", in: `https://app.example.com\api`, wantReason: "has a path"},
	{name: "query", in: "https://app.example.com?x=1", wantReason: "query"},
	{name: "fragment", in: "https://app.example.com#top", wantReason: "fragment"},
	{name: "userinfo", in: "https://user:pw@app.example.com", wantReason: "user information"},
	{name: "leading space", in: " https://app.example.com", wantReason: "whitespace"},
	{name: "inner space", in: "https://app.example .com", wantReason: "whitespace"},
	{name: "comma list", in: "https://a.example,https://b.example", wantReason: "several origins"},
	{name: "port zero", in: "https://app.example.com:0", wantReason: "out of range"},
	{name: "port too large", in: "https://app.example.com:65536", wantReason: "out of range"},
	{name: "port not a number", in: "https://app.example.com:https", wantReason: "not a number"},
	{name: "empty port", in: "https://app.example.com:", wantReason: "port is empty"},
	{name: "port leading zero", in: "https://app.example.com:08443", wantReason: "leading zeros"},
	{name: "two colons", in: "https://a:1:2", wantReason: "more than one colon"},
	{name: "no host", in: "https://", wantReason: "no host"},
	{name: "no host with port", in: "https://:8080", wantReason: "no host"},
	{name: "IPv6 leading zeros", in: "http://[::0001]", wantReason: "not in canonical form"},
	{name: "IPv6 uncompressed", in: "http://[0:0:0:0:0:0:0:1]", wantReason: "not in canonical form"},
	{name: "IPv6 wrong run compressed", in: "http://[1::2:0:0:0:3]", wantReason: "not in canonical form"},
	{name: "IPv6 embedded IPv4", in: "http://[::ffff:127.0.0.1]", wantReason: "not in canonical form"},
	{name: "IPv6 zone", in: "http://[fe80::1%25eth0]", wantReason: "zone"},
	{name: "IPv6 invalid", in: "http://[::g]", wantReason: "not a valid IPv6"},
	{name: "IPv6 unclosed", in: "http://[::1", wantReason: "no closing bracket"},
	{name: "IPv6 junk after", in: "http://[::1]x", wantReason: "after the IPv6"},
	{name: "IPv4 in brackets", in: "http://[127.0.0.1]", wantReason: "IPv4 address in brackets"},
	{name: "IPv4 short form", in: "http://127.1", wantReason: "not a canonical IPv4"},
	{name: "IPv4 hex", in: "http://0x7f.0.0.1", wantReason: "not a canonical IPv4"},
	{name: "IPv4 integer", in: "http://2130706433", wantReason: "not a canonical IPv4"},
	{name: "IPv4 leading zero", in: "http://127.0.0.01", wantReason: "not a canonical IPv4"},
	{name: "IPv4 five parts", in: "http://1.2.3.4.5", wantReason: "not a canonical IPv4"},
	{name: "IPv4 out of range", in: "http://1.2.3.256", wantReason: "not a canonical IPv4"},
	{name: "wildcard inside a label", in: "https://a*.example.com", wantReason: "whole leftmost label"},
	{name: "wildcard without dot", in: "https://*example.com", wantReason: "whole leftmost label"},
	{name: "wildcard in the middle", in: "https://a.*.example.com", wantReason: "whole leftmost label"},
	{name: "double wildcard", in: "https://*.*.example.com", wantReason: "whole leftmost label"},
	{name: "host only a wildcard", in: "https://*", wantReason: "only a wildcard"},
	{name: "subdomain and port wildcard", in: "HTTPS://*.Example.com:*", want: "https://*.example.com:*"},
	{name: "wildcard over an IP", in: "http://*.0.0.1", wantReason: "not a canonical IPv4"},
	{name: "wildcard over an IPv4", in: "http://*.1.2.3.4", wantReason: "cannot cover an IP"},
	{name: "underscore", in: "https://My_App.example.com", want: "https://my_app.example.com"},
	{name: "underscore in a wildcard", in: "https://*.my_app.example.com", want: "https://*.my_app.example.com"},
	{name: "underscore in a non-ASCII name", in: "https://b_ü.example", wantReason: "not allowed in a domain name"},
	{name: "trailing dot kept", in: "https://App.Example.com.", want: "https://app.example.com."},
	{name: "trailing dot with port", in: "https://example.com.:8443", want: "https://example.com.:8443"},
	{name: "trailing dot on an IP", in: "http://127.0.0.1.", wantReason: "trailing dot"},
	{name: "trailing dot on a wildcard", in: "https://*.example.com.", wantReason: "ends with a dot"},
	{name: "percent", in: "https://%61pp.example.com", wantReason: "not allowed in a domain name"},
	{name: "empty label", in: "https://a..example.com", wantReason: "empty label"},
	{name: "leading dot", in: "https://.example.com", wantReason: "empty label"},
	{name: "leading hyphen", in: "https://-a.example.com", wantReason: "hyphen"},
	{name: "trailing hyphen", in: "https://a-.example.com", wantReason: "hyphen"},
	{name: "label too long", in: "https://" + strings.Repeat("a", 64) + ".example", wantReason: "DNS labels are at most 63"},
	{name: "label at the limit", in: "https://" + strings.Repeat("a", 63) + ".example", want: "https://" + strings.Repeat("a", 63) + ".example"},
	{name: "IDN label too long in ASCII form", in: "https://" + strings.Repeat("ü", 60) + ".example", wantReason: "DNS labels are at most 63"},
	{name: "host too long", in: "https://" + strings.Repeat("a.", 127) + "example", wantReason: "DNS names are at most 253"},
	{name: "host at the limit", in: "https://" + dnsName(253), want: "https://" + dnsName(253)},
	{name: "host at the limit with a trailing dot", in: "https://" + dnsName(253) + ".", want: "https://" + dnsName(253) + "."},
	{name: "wildcard host at the limit", in: "https://*." + dnsName(251), want: "https://*." + dnsName(251)},
	{name: "wildcard host too long", in: "https://*." + dnsName(252), wantReason: "no origin can match it"},
	{name: "wildcard host too long with a port", in: "https://*." + dnsName(252) + ":8443", wantReason: "no origin can match it"},
	{name: "wildcard suffix too long", in: "https://*." + dnsName(254), wantReason: "DNS names are at most 253"},
	{name: "wildcard label too long", in: "https://*." + strings.Repeat("a", 64) + ".example", wantReason: "DNS labels are at most 63"},
	{name: "wildcard with underscores too long", in: "https://*.a_b." + dnsName(248), wantReason: "no origin can match it"},
	{name: "underscore label too long", in: "https://_" + strings.Repeat("a", 63) + ".example", wantReason: "DNS labels are at most 63"},
	{name: "invalid punycode", in: "https://xn--a.example", wantReason: "not a valid domain name"},
	{name: "ASCII punycode", in: "https://xn--abc-.example", wantReason: "not a valid domain name"},
	{name: "bidi rule", in: "https://1\u05d0.example", wantReason: "not a valid domain name"},
	{name: "disallowed code point", in: "https://a\u2028b.example", wantReason: "not a valid domain name"},
	{name: "invalid UTF-8", in: "http://0\xb1", wantReason: "not valid UTF-8"},
	{name: "pattern too long", in: "https://" + strings.Repeat("a", MaxPatternLength), wantReason: "the limit is"},
}

// dnsName returns an n-byte host name of 63-byte labels (the last one
// shorter), ending in "example" when there is room.
func dnsName(n int) string {
	var b strings.Builder
	for b.Len() < n {
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(strings.Repeat("a", min(maxDNSLabel, n-b.Len())))
	}
	return b.String()
}

func TestNormalizeOrigin(t *testing.T) {
	for _, tt := range normalizeOriginTests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NormalizeOrigin(tt.in)
			if tt.want == "" {
				var fe *FieldError
				if !errors.As(err, &fe) {
					t.Fatalf("NormalizeOrigin(%q) = %q, %v; want a *FieldError", tt.in, got, err)
				}
				if !strings.Contains(fe.Reason, tt.wantReason) || fe.Fix == "" || fe.Value != tt.in || fe.Field != "" {
					t.Errorf("NormalizeOrigin(%q) error = %+v; want Reason containing %q, a Fix, Value = input, no Field", tt.in, fe, tt.wantReason)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("NormalizeOrigin(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
			if again, err := NormalizeOrigin(got); err != nil || again != got {
				t.Errorf("NormalizeOrigin(%q) = %q, %v; want it unchanged (idempotence)", got, again, err)
			}
		})
	}
}

func TestNormalizeOriginFixSuggestsCorrection(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantFix string
	}{
		{name: "trailing slash", in: "https://App.example.com/", wantFix: `"https://App.example.com"`},
		{name: "path", in: "https://app.example.com/x/y", wantFix: `"https://app.example.com"`},
		{name: "no scheme", in: "app.example.com", wantFix: `"https://app.example.com"`},
		{name: "IPv6", in: "http://[::0001]", wantFix: "[::1]"},
		{name: "port", in: "http://a.example:0080", wantFix: "80"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NormalizeOrigin(tt.in)
			fes := FieldErrors(err)
			if len(fes) != 1 || !strings.Contains(fes[0].Fix, tt.wantFix) {
				t.Errorf("NormalizeOrigin(%q) error = %v; want a Fix containing %s", tt.in, err, tt.wantFix)
			}
		})
	}
}

func TestNormalizeHost(t *testing.T) {
	tests := []struct {
		name       string
		in         string
		want       string
		wantReason string
	}{
		{name: "domain", in: "api.example.com", want: "api.example.com"},
		{name: "upper case", in: "API.Example.com", want: "api.example.com"},
		{name: "wildcard", in: "*.api.example.com", want: "*.api.example.com"},
		{name: "IDN", in: "bücher.example", want: "xn--bcher-kva.example"},
		{name: "wildcard IDN", in: "*.bücher.example", want: "*.xn--bcher-kva.example"},
		{name: "with port", in: "api.example.com:8443", want: "api.example.com:8443"},
		{name: "wildcard with port", in: "*.example.com:443", want: "*.example.com:443"},
		{name: "IPv4", in: "127.0.0.1", want: "127.0.0.1"},
		{name: "IPv6", in: "[::1]:8080", want: "[::1]:8080"},

		{name: "empty", in: "", wantReason: "empty"},
		{name: "scheme", in: "https://api.example.com", wantReason: "no scheme"},
		{name: "path", in: "api.example.com/v1", wantReason: "contains"},
		{name: "port wildcard", in: "api.example.com:*", wantReason: "port wildcard"},
		{name: "bad port", in: "api.example.com:0", wantReason: "out of range"},
		{name: "wildcard in the middle", in: "api.*.example.com", wantReason: "whole leftmost label"},
		{name: "bare wildcard", in: "*", wantReason: "whole leftmost label"},
		{name: "wildcard over IP", in: "*.1.2.3.4", wantReason: "cannot cover an IP"},
		{name: "non-canonical IPv4", in: "127.1", wantReason: "not a canonical IPv4"},
		{name: "underscore", in: "a_b.example.com", wantReason: "not allowed"},
		{name: "trailing dot", in: "api.example.com.", wantReason: "ends with a dot"},
		{name: "at the DNS limit", in: dnsName(253), want: dnsName(253)},
		{name: "longer than DNS allows", in: dnsName(254), wantReason: "DNS names are at most 253"},
		{name: "label longer than DNS allows", in: strings.Repeat("a", 64) + ".example", wantReason: "DNS labels are at most 63"},
		{name: "wildcard at the DNS limit", in: "*." + dnsName(251), want: "*." + dnsName(251)},
		{name: "wildcard longer than DNS allows", in: "*." + dnsName(252), wantReason: "no host can match it"},
		{name: "whitespace", in: "api.example.com ", wantReason: "whitespace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NormalizeHost(tt.in)
			if tt.want == "" {
				fes := FieldErrors(err)
				if len(fes) != 1 || !strings.Contains(fes[0].Reason, tt.wantReason) || fes[0].Fix == "" {
					t.Errorf("NormalizeHost(%q) = %q, %v; want an error with Reason containing %q and a Fix", tt.in, got, err, tt.wantReason)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("NormalizeHost(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
			if again, err := NormalizeHost(got); err != nil || again != got {
				t.Errorf("NormalizeHost(%q) = %q, %v; want it unchanged", got, again, err)
			}
		})
	}
}

// requestOriginTests is shared with FuzzCheck as seeds.
var requestOriginTests = []struct {
	name   string
	in     string
	wantOK bool
	want   reqOrigin
}{
	{name: "https", in: "https://app.example.com", wantOK: true, want: reqOrigin{scheme: schemeHTTPS, hostport: "app.example.com", host: "app.example.com"}},
	{name: "http with port", in: "http://localhost:3000", wantOK: true, want: reqOrigin{scheme: schemeHTTP, hostport: "localhost:3000", host: "localhost", port: "3000"}},
	{name: "IPv4", in: "http://127.0.0.1:8080", wantOK: true, want: reqOrigin{scheme: schemeHTTP, hostport: "127.0.0.1:8080", host: "127.0.0.1", port: "8080", ip: true}},
	{name: "IPv6", in: "http://[::1]:8080", wantOK: true, want: reqOrigin{scheme: schemeHTTP, hostport: "[::1]:8080", host: "[::1]", port: "8080", ip: true}},
	{name: "IPv6 no port", in: "https://[2001:db8::1]", wantOK: true, want: reqOrigin{scheme: schemeHTTPS, hostport: "[2001:db8::1]", host: "[2001:db8::1]", ip: true}},
	{name: "underscore", in: "https://a_b.example.com", wantOK: true, want: reqOrigin{scheme: schemeHTTPS, hostport: "a_b.example.com", host: "a_b.example.com"}},
	{name: "trailing dot", in: "https://example.com.", wantOK: true, want: reqOrigin{scheme: schemeHTTPS, hostport: "example.com.", host: "example.com."}},
	{name: "port 65535", in: "https://a.example:65535", wantOK: true, want: reqOrigin{scheme: schemeHTTPS, hostport: "a.example:65535", host: "a.example", port: "65535"}},
	{name: "http on 443", in: "http://a.example:443", wantOK: true, want: reqOrigin{scheme: schemeHTTP, hostport: "a.example:443", host: "a.example", port: "443"}},
	{name: "other scheme", in: "chrome-extension://abcdefgh", wantOK: true, want: reqOrigin{scheme: -1, hostport: "abcdefgh"}},

	{name: "empty", in: ""},
	{name: "upper case host", in: "https://App.example.com"},
	{name: "upper case scheme", in: "HTTPS://app.example.com"},
	{name: "default port https", in: "https://app.example.com:443"},
	{name: "default port http", in: "http://app.example.com:80"},
	{name: "path", in: "https://app.example.com/path"},
	{name: "trailing slash", in: "https://app.example.com/"},
	{name: "comma list", in: "https://a.example, https://b.example"},
	{name: "comma list no space", in: "https://a.example,https://b.example"},
	{name: "leading space", in: " https://app.example.com"},
	{name: "trailing space", in: "https://app.example.com "},
	{name: "no host", in: "https://"},
	{name: "empty port", in: "https://a.example:"},
	{name: "port leading zero", in: "https://a.example:0443"},
	{name: "port too large", in: "https://a.example:65536"},
	{name: "port too long", in: "https://a.example:123456"},
	{name: "double dot", in: "https://a..example"},
	{name: "leading dot", in: "https://.example"},
	{name: "userinfo", in: "https://u@a.example"},
	{name: "IPv4 short", in: "http://127.1"},
	{name: "IPv4 integer", in: "http://2130706433"},
	{name: "IPv4 hex", in: "http://0x7f.0.0.1"},
	{name: "IPv4 trailing dot", in: "http://1.2.3.4."},
	{name: "IPv6 leading zeros", in: "http://[::0001]"},
	{name: "IPv6 upper case", in: "http://[::A]"},
	{name: "IPv6 embedded IPv4", in: "http://[::ffff:1.2.3.4]"},
	{name: "IPv6 unclosed", in: "http://[::1"},
	{name: "IPv6 junk after", in: "http://[::1]x"},
	{name: "unicode host", in: "https://bücher.example"},
	{name: "other scheme upper case", in: "Chrome-extension://abc"},
	{name: "other scheme with path", in: "chrome-extension://abc/def"},
	{name: "no scheme", in: "app.example.com"},
}

func TestParseRequestOrigin(t *testing.T) {
	for _, tt := range requestOriginTests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseRequestOrigin(tt.in)
			got.dots, got.ndots = [8]uint8{}, 0 // checked by TestCheck's wildcard cases
			if ok != tt.wantOK || ok && got != tt.want {
				t.Errorf("parseRequestOrigin(%q) = %+v, %v; want %+v, %v", tt.in, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestAppendIPv6MatchesURLStandard(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{name: "unspecified", in: "::", want: "::"},
		{name: "loopback", in: "::1", want: "::1"},
		{name: "trailing run", in: "1::", want: "1::"},
		{name: "longest run wins", in: "1:0:0:2:0:0:0:3", want: "1:0:0:2::3"},
		{name: "first of equal runs", in: "1:0:0:2:0:0:3:4", want: "1::2:0:0:3:4"},
		{name: "single zero not compressed", in: "1:0:1:1:1:1:1:1", want: "1:0:1:1:1:1:1:1"},
		{name: "v4-mapped in hex", in: "::ffff:1.2.3.4", want: "::ffff:102:304"},
		{name: "full", in: "2001:db8:85a3:8d3:1319:8a2e:370:7348", want: "2001:db8:85a3:8d3:1319:8a2e:370:7348"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := netip.MustParseAddr(tt.in)
			if got := string(appendIPv6(nil, a.As16())); got != tt.want {
				t.Errorf("appendIPv6(%s) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
	// Outside the v4-mapped range, the URL standard and RFC 5952 agree.
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		var b [16]byte
		for i := range b {
			if r.IntN(3) > 0 { // many zero groups
				b[i] = byte(r.UintN(256))
			}
		}
		a := netip.AddrFrom16(b)
		if a.Is4In6() {
			continue
		}
		got := string(appendIPv6(nil, b))
		if want := a.String(); got != want {
			t.Fatalf("appendIPv6(%x) = %q, want %q", b, got, want)
		}
		if back, ok := parseIPv6(got); !ok || back != b {
			t.Fatalf("parseIPv6(%q) = %x, %v; want %x", got, back, ok, b)
		}
	}
}

func TestParseIPv6(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		wantOK bool
	}{
		{name: "loopback", in: "::1", wantOK: true},
		{name: "unspecified", in: "::", wantOK: true},
		{name: "full", in: "1:2:3:4:5:6:7:8", wantOK: true},
		{name: "trailing gap", in: "1:2::", wantOK: true},
		{name: "upper case", in: "ABCD::1", wantOK: true},
		{name: "empty", in: ""},
		{name: "single colon", in: ":"},
		{name: "triple colon", in: ":::"},
		{name: "two gaps", in: "1::2::3"},
		{name: "too many groups", in: "1:2:3:4:5:6:7:8:9"},
		{name: "gap with eight groups", in: "1:2:3:4::5:6:7:8"},
		{name: "too few groups", in: "1:2:3"},
		{name: "group too long", in: "12345::"},
		{name: "trailing colon", in: "1:2:3:4:5:6:7:"},
		{name: "leading colon", in: ":1:2:3:4:5:6:7"},
		{name: "bad digit", in: "g::"},
		{name: "dotted", in: "::1.2.3.4"},
		{name: "zone", in: "fe80::1%eth0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseIPv6(tt.in)
			if ok != tt.wantOK {
				t.Fatalf("parseIPv6(%q) ok = %v, want %v", tt.in, ok, tt.wantOK)
			}
			if ok {
				if want := netip.MustParseAddr(tt.in).As16(); got != want {
					t.Errorf("parseIPv6(%q) = %x, want %x", tt.in, got, want)
				}
			}
		})
	}
}

func TestIsCanonicalIPv4(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{name: "loopback", in: "127.0.0.1", want: true},
		{name: "zeros", in: "0.0.0.0", want: true},
		{name: "max", in: "255.255.255.255", want: true},
		{name: "out of range", in: "256.0.0.1"},
		{name: "leading zero", in: "01.0.0.1"},
		{name: "three parts", in: "1.2.3"},
		{name: "five parts", in: "1.2.3.4.5"},
		{name: "empty part", in: "1..3.4"},
		{name: "trailing dot", in: "1.2.3.4."},
		{name: "four digits", in: "1000.2.3.4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := isCanonicalIPv4(tt.in); got != tt.want {
				t.Errorf("isCanonicalIPv4(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestEndsInNumber(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want bool
	}{
		{name: "decimal", in: "example.123", want: true},
		{name: "leading zero decimal", in: "a.09", want: true},
		{name: "hex", in: "a.0x1f", want: true},
		{name: "bare hex prefix", in: "0x", want: true},
		{name: "trailing dot", in: "1.2.3.4.", want: true},
		{name: "not hex", in: "a.0xg", want: false},
		{name: "letters", in: "example.com", want: false},
		{name: "mixed", in: "a.1a", want: false},
		{name: "only a dot", in: ".", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := endsInNumber(tt.in); got != tt.want {
				t.Errorf("endsInNumber(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}
