package pix

import "crypto/rand"

const txidAlphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

// TxidLen is the length of the txids NewTxid makes.
const TxidLen = 32

// NewTxid returns a fresh charge txid: TxidLen characters drawn uniformly
// (no modulo bias) from [a-zA-Z0-9] with crypto/rand, about 190 bits of
// entropy, so it is unique without coordination and ValidTxid accepts it.
func NewTxid() string {
	b := make([]byte, TxidLen)
	buf := make([]byte, 64)
	for n := 0; n < TxidLen; {
		rand.Read(buf) // never fails (crypto/rand, Go 1.24+)
		for _, c := range buf {
			// 248 = 4·62: accepting only c < 248 keeps c % 62 uniform.
			if c < 248 && n < TxidLen {
				b[n] = txidAlphabet[c%62]
				n++
			}
		}
	}
	return string(b)
}

// ValidTxid reports whether s is a valid txid for a Pix charge (cobrança
// imediata) in the Pix API: 26 to 35 characters of [a-zA-Z0-9].
func ValidTxid(s string) bool {
	return len(s) >= 26 && len(s) <= 35 && alnum(s)
}
