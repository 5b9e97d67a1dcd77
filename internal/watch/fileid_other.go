//go:build !unix

package watch

import "os"

// idOf can't tell directories apart here: every apply re-adds every watch.
func idOf(os.FileInfo) fileID { return fileID{reAdd: true} }
