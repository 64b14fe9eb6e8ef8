// Package pix is Mutuo's side of Pix, Brazil's instant payment system: the
// BR Code ("copia e cola") payload, Pix keys, txids, the PSP (payment service
// provider) interface with a deterministic sandbox, and webhook parsing and
// signatures. It is pure apart from crypto/rand in NewTxid: the real PSP
// client, which does I/O, implements PSP elsewhere.
package pix

import (
	"fmt"
	"strconv"
	"strings"

	"mutuo/lending"
)

// GUI is the globally unique identifier of the Pix arrangement inside a BR
// Code's merchant account information.
const GUI = "br.gov.bcb.pix"

// Limits of the BR Code fields (EMV QRCPS and the central bank's "Manual de
// Padrões para Iniciação do Pix").
const (
	MaxKeyLen          = 77  // a DICT key (sub-field 26.01)
	MaxURLLen          = 77  // a payload location (sub-field 26.25)
	MaxMerchantNameLen = 25  // field 59
	MaxMerchantCityLen = 15  // field 60
	MaxStaticTxidLen   = 25  // field 62.05 (EMV Reference Label)
	MaxPayloadLen      = 512 // longest payload Decode reads
)

// BRCode is the content of a Pix BR Code in the merchant-presented EMV
// format. Exactly one of Key (a static code that pays a DICT key) and URL (a
// dynamic code whose charge, a "cobrança", is fetched from the PSP at that
// location) is set. Amount 0 means the payer types the amount. All strings are
// printable ASCII: transliterate accents ("SAO PAULO") before encoding.
type BRCode struct {
	Key          string        // 26.01: the receiver's Pix key (static codes)
	URL          string        // 26.25: payload location without "https://" (dynamic codes)
	MerchantName string        // 59: 1-25 characters
	MerchantCity string        // 60: 1-15 characters
	Txid         string        // 62.05: "" (written "***") or 1-25 of [A-Za-z0-9]; always "" in dynamic codes
	Amount       lending.Money // 54: 0 (omitted) or 0.01 to 9999999999.99
	Description  string        // 26.02: optional message to the payer
}

// Encode renders b as a BR Code payload in canonical field order:
// 00 "01", 01 "12" (dynamic codes only), 26 {00 GUI, 01 key | 25 url, 02
// description}, 52 "0000", 53 "986", 54 amount (when not 0), 58 "BR", 59, 60,
// 62 {05 txid or "***"}, 63 CRC16 (four uppercase hex digits over everything
// before it, "6304" included). It returns BAD_USER_INPUT naming the first
// field that breaks the rules above. Decode(Encode(b)) == b whenever Encode
// succeeds.
func Encode(b BRCode) (string, error) {
	if err := validate(b); err != nil {
		return "", err
	}
	var sb strings.Builder
	writeTLV(&sb, "00", "01")
	if b.URL != "" {
		writeTLV(&sb, "01", "12")
	}
	writeTLV(&sb, "26", merchantAccount(b))
	writeTLV(&sb, "52", "0000")
	writeTLV(&sb, "53", "986")
	if b.Amount != 0 {
		writeTLV(&sb, "54", b.Amount.String())
	}
	writeTLV(&sb, "58", "BR")
	writeTLV(&sb, "59", b.MerchantName)
	writeTLV(&sb, "60", b.MerchantCity)
	txid := b.Txid
	if txid == "" {
		txid = "***"
	}
	var add strings.Builder
	writeTLV(&add, "05", txid)
	writeTLV(&sb, "62", add.String())
	sb.WriteString("6304")
	fmt.Fprintf(&sb, "%04X", CRC16([]byte(sb.String())))
	return sb.String(), nil
}

func merchantAccount(b BRCode) string {
	var sb strings.Builder
	writeTLV(&sb, "00", GUI)
	if b.Key != "" {
		writeTLV(&sb, "01", b.Key)
	}
	if b.Description != "" {
		writeTLV(&sb, "02", b.Description)
	}
	if b.URL != "" {
		writeTLV(&sb, "25", b.URL)
	}
	return sb.String()
}

// writeTLV writes one field; callers have checked len(v) <= 99.
func writeTLV(sb *strings.Builder, id, v string) {
	sb.WriteString(id)
	fmt.Fprintf(sb, "%02d", len(v))
	sb.WriteString(v)
}

func invalid(format string, args ...any) error {
	return lending.BadInput("invalid BR Code: "+format, args...)
}

// validate is the single set of rules that Encode enforces and Decode checks
// after parsing, so that whatever Decode returns, Encode accepts.
func validate(b BRCode) error {
	switch {
	case b.Key == "" && b.URL == "":
		return invalid("a Pix key or a payload URL is required")
	case b.Key != "" && b.URL != "":
		return invalid("a BR Code has a Pix key or a payload URL, not both")
	}
	if err := text("key", b.Key, 0, MaxKeyLen); err != nil {
		return err
	}
	if err := text("URL", b.URL, 0, MaxURLLen); err != nil {
		return err
	}
	if strings.Contains(b.URL, "://") {
		return invalid("the payload URL goes without its scheme")
	}
	if err := text("description", b.Description, 0, 99); err != nil {
		return err
	}
	if n := len(merchantAccount(b)); n > 99 {
		return invalid("key/URL and description are %d characters together, too long by %d", n, n-99)
	}
	if err := text("merchant name", b.MerchantName, 1, MaxMerchantNameLen); err != nil {
		return err
	}
	if err := text("merchant city", b.MerchantCity, 1, MaxMerchantCityLen); err != nil {
		return err
	}
	if b.Txid != "" {
		if b.URL != "" {
			return invalid("a dynamic BR Code carries txid \"***\"; the charge holds the real txid")
		}
		if len(b.Txid) > MaxStaticTxidLen || !alnum(b.Txid) {
			return invalid("txid must be 1 to %d letters and digits", MaxStaticTxidLen)
		}
	}
	if b.Amount < 0 || b.Amount > 9_999_999_999_99 {
		return invalid("amount %v out of range", b.Amount)
	}
	return nil
}

func text(field, s string, minLen, maxLen int) error {
	if len(s) < minLen || len(s) > maxLen {
		return invalid("%s must be %d to %d characters", field, minLen, maxLen)
	}
	if !printable(s) {
		return invalid("%s must be printable ASCII (no accents)", field)
	}
	return nil
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func alnum(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

type tlv struct{ id, value string }

// parseTLVs splits s into ID (2 digits), length (2 digits, 01-99), value
// fields, refusing anything that does not split exactly or repeats an ID.
// where prefixes error messages ("" at the top level).
func parseTLVs(s, where string) ([]tlv, error) {
	var out []tlv
	seen := map[string]bool{}
	for i := 0; i < len(s); {
		if len(s)-i < 4 {
			return nil, invalid("%struncated field at offset %d", where, i)
		}
		id, ln := s[i:i+2], s[i+2:i+4]
		if !digits(id) || !digits(ln) {
			return nil, invalid("%sbad field header %q at offset %d", where, s[i:i+4], i)
		}
		n, _ := strconv.Atoi(ln)
		i += 4
		if n == 0 || n > len(s)-i {
			return nil, invalid("%sfield %s has bad length %d", where, id, n)
		}
		if seen[id] {
			return nil, invalid("%sfield %s repeated", where, id)
		}
		seen[id] = true
		out = append(out, tlv{id, s[i : i+n]})
		i += n
	}
	return out, nil
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return len(s) > 0
}

// Decode parses a BR Code payload strictly: printable ASCII of at most
// MaxPayloadLen characters, well-formed TLV fields with no repeated ID (also
// inside templates 26 and 62), 00 "01" first, 63 last with a CRC16 that
// matches (hex digits in either case), 01 (if present) "11" or "12", exactly
// one merchant account template (26 to 51) with the Pix GUI (in any case)
// holding a key or a URL, 52 four digits, 53 "986", 54 (if present) a
// positive amount with at most two decimals, 58 "BR", 59, 60, and 62 with a
// 05 txid ("***" for none). Every field BRCode holds must then pass the rules
// of Encode. Fields BRCode does not model (other templates, 55-57, 61, 64,
// 80-99, other sub-fields) are checked for syntax and ignored, so re-encoding
// gives the canonical form: identical for any payload Encode produced (and
// for canonical payloads such as the central bank's static example).
//
// Every failure is BAD_USER_INPUT; Decode never panics.
func Decode(s string) (BRCode, error) {
	var b BRCode
	if len(s) > MaxPayloadLen {
		return BRCode{}, invalid("longer than %d characters", MaxPayloadLen)
	}
	if !printable(s) {
		return BRCode{}, invalid("not printable ASCII")
	}
	if len(s) < 8 || s[len(s)-8:len(s)-4] != "6304" {
		return BRCode{}, invalid("does not end with a CRC field (6304XXXX)")
	}
	got, err := strconv.ParseUint(s[len(s)-4:], 16, 16)
	if err != nil || !hex4(s[len(s)-4:]) {
		return BRCode{}, invalid("CRC %q is not four hex digits", s[len(s)-4:])
	}
	if want := CRC16([]byte(s[:len(s)-4])); uint16(got) != want {
		return BRCode{}, invalid("CRC mismatch: payload says %s, content gives %04X", s[len(s)-4:], want)
	}
	fields, err := parseTLVs(s, "")
	if err != nil {
		return BRCode{}, err
	}
	if fields[0].id != "00" || fields[0].value != "01" {
		return BRCode{}, invalid("must start with payload format 000201")
	}
	if last := fields[len(fields)-1]; last.id != "63" || len(last.value) != 4 {
		return BRCode{}, invalid("the CRC field 63 must come last")
	}
	byID := make(map[string]string, len(fields))
	pixTemplates := 0
	for _, f := range fields {
		byID[f.id] = f.value
		if n, _ := strconv.Atoi(f.id); n >= 26 && n <= 51 {
			subs, err := parseTLVs(f.value, "in template "+f.id+": ")
			if err != nil {
				return BRCode{}, err
			}
			if len(subs) == 0 || subs[0].id != "00" || !strings.EqualFold(subs[0].value, GUI) {
				continue // another arrangement's template
			}
			pixTemplates++
			for _, sub := range subs[1:] {
				switch sub.id {
				case "01":
					b.Key = sub.value
				case "02":
					b.Description = sub.value
				case "25":
					b.URL = sub.value
				}
			}
		}
	}
	if pixTemplates != 1 {
		return BRCode{}, invalid("want exactly one Pix merchant account template, found %d", pixTemplates)
	}
	if v, ok := byID["01"]; ok && v != "11" && v != "12" {
		return BRCode{}, invalid("point of initiation method %q (want 11 or 12)", v)
	}
	if v, ok := byID["52"]; !ok || len(v) != 4 || !digits(v) {
		return BRCode{}, invalid("merchant category code (52) missing or not four digits")
	}
	if byID["53"] != "986" {
		return BRCode{}, invalid("currency (53) must be 986 (BRL)")
	}
	if v, ok := byID["54"]; ok {
		m, err := lending.ParseMoney(v)
		if err != nil || m <= 0 || len(v) > 13 {
			return BRCode{}, invalid("amount (54) %q", v)
		}
		b.Amount = m
	}
	if byID["58"] != "BR" {
		return BRCode{}, invalid("country (58) must be BR")
	}
	b.MerchantName, b.MerchantCity = byID["59"], byID["60"]
	add, ok := byID["62"]
	if !ok {
		return BRCode{}, invalid("additional data (62) with the txid is missing")
	}
	subs, err := parseTLVs(add, "in template 62: ")
	if err != nil {
		return BRCode{}, err
	}
	txidFound := false
	for _, sub := range subs {
		if sub.id == "05" {
			txidFound = true
			if sub.value != "***" {
				b.Txid = sub.value
			}
		}
	}
	if !txidFound {
		return BRCode{}, invalid("txid (62.05) is missing")
	}
	if err := validate(b); err != nil {
		return BRCode{}, err
	}
	return b, nil
}

func hex4(s string) bool {
	if len(s) != 4 {
		return false
	}
	for i := 0; i < 4; i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// CRC16 is CRC-16/CCITT-FALSE (polynomial 0x1021, initial value 0xFFFF, no
// reflection, no final XOR), the checksum of field 63. CRC16("123456789") is
// 0x29B1.
func CRC16(data []byte) uint16 {
	crc := uint16(0xFFFF)
	for _, b := range data {
		crc ^= uint16(b) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}
