package policy_test

import (
	"fmt"
	"time"

	"github.com/corsd/corsd/policy"
)

func ExampleCompile() {
	p, err := policy.Compile(policy.Config{
		Name: "policies/acme",
		Origins: []policy.Origin{
			{Pattern: "HTTPS://App.Example.com:443", AllowCredentials: true},
			{Pattern: "https://*.bücher.example"},
		},
		AllowedMethods:        []string{"put", "PATCH"},
		AllowedRequestHeaders: []string{"Content-Type"},
		MaxAge:                10 * time.Minute,
		MaxAgeSet:             true,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	c := p.Config()
	for _, o := range c.Origins {
		fmt.Println(o.Pattern)
	}
	fmt.Println(c.AllowedMethods)
	// Output:
	// https://app.example.com
	// https://*.xn--bcher-kva.example
	// [PUT PATCH]
}

// A "*" rule that allows credentials is refused: browsers never send
// credentials to "Access-Control-Allow-Origin: *", and echoing every origin
// instead would let any site read the user's data.
func ExampleCompile_credentialsWithAnyOrigin() {
	_, err := policy.Compile(policy.Config{
		Origins:        []policy.Origin{{Pattern: "*", AllowCredentials: true}},
		AllowedMethods: []string{"TRACE"},
	})
	for _, fe := range policy.FieldErrors(err) {
		fmt.Printf("%s: %s\n  fix: %s\n", fe.Field, fe.Reason, fe.Fix)
	}
	// Output:
	// origins[0].allow_credentials: "*" never allows credentials: browsers refuse "Access-Control-Allow-Origin: *" with credentials, and any site could read the responses
	//   fix: list the trusted origins explicitly with allow_credentials, or set allow_credentials to false
	// allowed_methods[0]: TRACE is forbidden by the Fetch standard: browsers never send it
	//   fix: remove it
}

func ExamplePolicy_Check() {
	p, err := policy.Compile(policy.Config{
		Name:                   "policies/acme",
		Origins:                []policy.Origin{{Pattern: "https://app.example.com", AllowCredentials: true}},
		AllowedMethods:         []string{"PUT"},
		AllowedRequestHeaders:  []string{"Content-Type"},
		ExposedResponseHeaders: []string{"X-Request-Id"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	show := func(d policy.Decision) {
		fmt.Println(d.Kind, d.Allowed, d.Status, d.Reason)
		for _, h := range d.Headers() {
			fmt.Printf("  %s: %s\n", h.Name, h.Value)
		}
	}

	// The browser's preflight for a PUT with a JSON body.
	show(p.Check(policy.Request{
		Method:                      "OPTIONS",
		Origin:                      "https://app.example.com",
		AccessControlRequestMethod:  "PUT",
		AccessControlRequestHeaders: "content-type",
	}))
	// The PUT itself.
	show(p.Check(policy.Request{Method: "PUT", Origin: "https://app.example.com"}))
	// Another site's request passes, but it may not read the response.
	d := p.Check(policy.Request{Method: "GET", Origin: "https://evil.example"})
	show(d)
	fmt.Println(d.Message())
	// Output:
	// PREFLIGHT true 204 ALLOWED
	//   Access-Control-Allow-Origin: https://app.example.com
	//   Access-Control-Allow-Credentials: true
	//   Access-Control-Allow-Methods: PUT
	//   Access-Control-Allow-Headers: Content-Type
	//   Vary: Origin, Access-Control-Request-Method, Access-Control-Request-Headers, Access-Control-Request-Private-Network
	// ACTUAL true 0 ALLOWED
	//   Access-Control-Allow-Origin: https://app.example.com
	//   Access-Control-Allow-Credentials: true
	//   Access-Control-Expose-Headers: X-Request-Id
	//   Vary: Origin
	// ACTUAL false 0 ORIGIN_NOT_ALLOWED
	//   Vary: Origin
	// origin https://evil.example is not in policies/acme
}

func ExampleNormalizeOrigin() {
	for _, s := range []string{"https://Bücher.example:443", "http://[::1]:8080", "https://app.example.com/"} {
		out, err := policy.NormalizeOrigin(s)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Println(out)
	}
	// Output:
	// https://xn--bcher-kva.example
	// http://[::1]:8080
	// policy: pattern ends with a slash; an origin has no path (got "https://app.example.com/"); remove the trailing slash: write "https://app.example.com"
}

func ExampleNormalizeHost() {
	h, err := policy.NormalizeHost("*.API.bücher.example:8443")
	fmt.Println(h, err)
	// Output:
	// *.api.xn--bcher-kva.example:8443 <nil>
}
