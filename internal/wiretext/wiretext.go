// Package wiretext checks and cleans text that arrives on the wire before
// it reaches PostgreSQL, a log or a guest: PostgreSQL refuses NUL bytes
// and invalid UTF-8 in text and JSONB (which made such input a 500), a
// guest cannot take a NUL in a name, an argument or an environment
// variable, and what an anonymous caller sends must not be stored or
// logged whole.
package wiretext

import (
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"unicode/utf8"
)

// Check walks a decoded request body (structs, maps, slices, pointers)
// and returns an error naming the first string that holds a NUL byte or
// invalid UTF-8. A struct field tagged `wiretext:"binary"` may hold any
// bytes (exec stdin). Names are the JSON field names.
func Check(v any) error {
	return check(reflect.ValueOf(v), "body")
}

func check(v reflect.Value, path string) error {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return check(v.Elem(), path)
	case reflect.String:
		return text(path, v.String())
	case reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() || f.Tag.Get("wiretext") == "binary" {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" {
				name = f.Name
			}
			if err := check(v.Field(i), path+"."+name); err != nil {
				return err
			}
		}
	case reflect.Map:
		it := v.MapRange()
		for it.Next() {
			k := fmt.Sprint(it.Key().Interface())
			if it.Key().Kind() == reflect.String {
				if err := text(path+" key", k); err != nil {
					return err
				}
			}
			if err := check(it.Value(), path+"."+k); err != nil {
				return err
			}
		}
	case reflect.Slice, reflect.Array:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return nil // bytes are bytes
		}
		for i := range v.Len() {
			if err := check(v.Index(i), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	}
	return nil
}

// text refuses a NUL byte or invalid UTF-8 in one value.
func text(name, s string) error {
	if strings.IndexByte(s, 0) >= 0 {
		return fmt.Errorf("%s contains a NUL byte", Clean(name, 100))
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s is not valid UTF-8", Clean(name, 100))
	}
	return nil
}

// CheckQuery refuses a NUL byte or invalid UTF-8 in a request's path or
// query parameters.
func CheckQuery(path string, q url.Values) error {
	if err := text("the path", path); err != nil {
		return err
	}
	for k, vs := range q {
		if err := text("a query parameter name", k); err != nil {
			return err
		}
		for _, v := range vs {
			if err := text("query parameter "+Clean(k, 40), v); err != nil {
				return err
			}
		}
	}
	return nil
}

// Clean makes s safe to store or log: NUL bytes and invalid UTF-8 are
// replaced, and anything beyond max bytes is cut (marked with "…").
func Clean(s string, max int) string {
	s = strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", "\uFFFD"), "\uFFFD")
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
