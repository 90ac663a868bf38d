package cphttp

import (
	"errors"
	"io"
	"net/http"

	"git.omukk.dev/wrenn/sandbox/pkg/auth"
	"git.omukk.dev/wrenn/sandbox/pkg/fault"
	"git.omukk.dev/wrenn/sandbox/pkg/service"
)

// ReceiveTemplateFiles reads a build-context archive from the request's
// body, bounded by service.MaxContextBytes; the E2B upload shares it.
func ReceiveTemplateFiles(w http.ResponseWriter, r *http.Request, svc *service.Service, c auth.Caller, hash string) error {
	if err := service.ValidFilesHash(hash); err != nil {
		return err
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, service.MaxContextBytes))
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return fault.Errorf(fault.Invalid, "the build context is larger than %d bytes; copy less (a .dockerignore helps) or make the files in a RUN step", service.MaxContextBytes)
	}
	if err != nil {
		return fault.Errorf(fault.Invalid, "reading the upload: %v", err)
	}
	return svc.PutTemplateFile(r.Context(), c, hash, data)
}
