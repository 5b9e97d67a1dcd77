package check

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"

	"github.com/scopegate/scopegate/extauthz/decisionlog"
	"github.com/scopegate/scopegate/extauthz/denial"
	"github.com/scopegate/scopegate/extauthz/policy"
	"github.com/scopegate/scopegate/extauthz/routes"
	"github.com/scopegate/scopegate/internal/contract"
)

// route finds the route contract of a request that names none (mesh mode): the route Envoy
// would take in the table gives v its extensions, and the decision goes on (nil). A public
// route is allowed here, a document route answered, and no route at all denied (unless
// token_only, which decides with the request's own, route-less, extensions).
func (s *Service) route(v *policy.View, rec *decisionlog.Record) *authv3.CheckResponse {
	var m *routes.Matched
	if t := s.o.Routes.Load(); t != nil {
		m = t.Match(v.HTTP.GetHost(), v.HTTP.GetPath(), v.HTTP.GetMethod(), v.HTTP.GetHeaders())
	}
	switch {
	case m == nil && s.o.DenyUnmatched:
		return s.deny(rec, errNoRoute)
	case m == nil:
		return nil
	case m.Document != nil:
		rec.Route, rec.Allow, rec.Status = m.Name, true, 200
		return documentResponse(m.Document)
	case m.Public():
		rec.Route, rec.Allow, rec.Status = m.Name, true, 200
		return s.public
	}
	v.SetRoute(m.Extensions)
	rec.Route, rec.View.Route, rec.View.RouteErr = m.Name, v.Route, v.RouteErr
	return nil
}

var errNoRoute = denial.New(denial.AccessDenied, contract.ReasonNoRoute, "no route matched the request")

// documentResponse answers the request with the document itself: Envoy sends a denied
// response's status, headers and body to the client as they are, 200 included.
func documentResponse(d *routes.Document) *authv3.CheckResponse {
	headers := []*corev3.HeaderValueOption{denial.HeaderOption("content-type", d.ContentType)}
	if d.CacheControl != "" {
		headers = append(headers, denial.HeaderOption("cache-control", d.CacheControl))
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(codes.PermissionDenied), Message: "served by scopegate authz"},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode_OK},
			Headers: headers,
			Body:    string(d.Body),
		}},
	}
}
