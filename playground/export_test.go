package playground

import "io/fs"

// Dist is the embedded dist/ directory, for the external tests.
var Dist, _ = fs.Sub(dist, "dist")
