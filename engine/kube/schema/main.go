// Writes the shape of every Kubernetes object type the apiserver stores, read by reflection
// from the published Go types: for each struct, its fields' protobuf numbers and wire types
// (what etcd holds), JSON names and omitempty/inline rules (what kubectl prints), and whether
// a field is a pointer (so a stored zero, such as `replicas: 0`, is shown, not dropped).
// runbook decodes snapshot values with it (`runbook snapshot get`); the output is committed as
// engine/kube/types.json and a test checks it is what this program writes.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextensionsv1beta1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1beta1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/sets"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	apiregistrationv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
)

// Shape is a field's type: a scalar, a message (struct), a list, a map or a pointer to one.
type Shape struct {
	K string `json:"k"`           // bool int uint float string bytes msg list map ptr
	T string `json:"t,omitempty"` // msg: the type's name
	E *Shape `json:"e,omitempty"` // list, map (value), ptr: the element
}

type Field struct {
	Name      string `json:"name"` // the Go field's name, for messages
	Tag       int    `json:"tag,omitempty"`
	Wire      string `json:"wire,omitempty"` // varint bytes fixed64 fixed32
	JSON      string `json:"json"`
	OmitEmpty bool   `json:"omitempty,omitempty"`
	OmitZero  bool   `json:"omitzero,omitempty"`
	Inline    bool   `json:"inline,omitempty"`
	Shape     Shape  `json:"shape"`
}

type Type struct {
	Fields []Field `json:"fields,omitempty"`
	// The type writes its own JSON (metav1.Time, resource.Quantity, intstr.IntOrString ...).
	Marshals bool `json:"marshals,omitempty"`
}

var marshaler = reflect.TypeOf((*json.Marshaler)(nil)).Elem()

func name(t reflect.Type) string { return t.PkgPath() + "." + t.Name() }

type walker struct {
	types map[string]Type
}

func (w *walker) shape(t reflect.Type) Shape {
	switch t.Kind() {
	case reflect.Pointer:
		e := w.shape(t.Elem())
		return Shape{K: "ptr", E: &e}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return Shape{K: "bytes"}
		}
		e := w.shape(t.Elem())
		return Shape{K: "list", E: &e}
	case reflect.Map:
		e := w.shape(t.Elem())
		return Shape{K: "map", E: &e}
	case reflect.Struct:
		w.walk(t)
		return Shape{K: "msg", T: name(t)}
	case reflect.Bool:
		return Shape{K: "bool"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return Shape{K: "int"}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return Shape{K: "uint"}
	case reflect.Float32, reflect.Float64:
		return Shape{K: "float"}
	case reflect.String:
		return Shape{K: "string"}
	case reflect.Interface:
		return Shape{K: "any"}
	}
	panic(fmt.Sprintf("unhandled kind %s in %s", t.Kind(), t))
}

func (w *walker) walk(t reflect.Type) {
	n := name(t)
	if _, seen := w.types[n]; seen {
		return
	}
	w.types[n] = Type{} // a recursive type (JSONSchemaProps) refers to itself
	ty := Type{Marshals: t.Implements(marshaler) || reflect.PointerTo(t).Implements(marshaler)}
	// A type that writes its own JSON has a layout runbook knows by name (its protobuf
	// message is not its Go struct: metav1.Time is seconds and nanos, not time.Time).
	for i := 0; i < t.NumField() && !ty.Marshals; i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		js := strings.Split(f.Tag.Get("json"), ",")
		if js[0] == "-" {
			continue
		}
		field := Field{Name: f.Name, JSON: js[0]}
		for _, o := range js[1:] {
			switch o {
			case "omitempty":
				field.OmitEmpty = true
			case "omitzero":
				field.OmitZero = true
			case "inline":
				field.Inline = true
			}
		}
		if field.JSON == "" && !field.Inline {
			field.JSON = f.Name
		}
		pb := strings.Split(f.Tag.Get("protobuf"), ",")
		if len(pb) >= 2 {
			fmt.Sscan(pb[1], &field.Tag)
			field.Wire = pb[0]
		}
		// Fields with no protobuf number (TypeMeta, inline) are not in the stored bytes;
		// an inline struct without one (TypeMeta) is left out entirely.
		if field.Tag == 0 && (field.Inline && f.Type.Kind() == reflect.Struct && f.Anonymous) {
			continue
		}
		field.Shape = w.shape(f.Type)
		ty.Fields = append(ty.Fields, field)
	}
	w.types[n] = ty
}

func main() {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		clientgoscheme.AddToScheme,
		apiextensionsv1.AddToScheme,
		apiextensionsv1beta1.AddToScheme,
		apiregistrationv1.AddToScheme,
	} {
		if err := add(scheme); err != nil {
			panic(err)
		}
	}
	w := &walker{types: map[string]Type{}}
	kinds := map[string]string{}
	for gvk, t := range scheme.AllKnownTypes() {
		if gvk.Version == runtime.APIVersionInternal || strings.HasSuffix(gvk.Kind, "List") {
			continue
		}
		// Only what the apiserver stores: objects with metadata.
		if _, ok := t.FieldByName("ObjectMeta"); !ok {
			continue
		}
		w.walk(t)
		kinds[gvk.GroupVersion().String()+" "+gvk.Kind] = name(t)
	}
	out := os.Stdout
	fmt.Fprintln(out, "{\"kinds\": {")
	writeSorted(out, kinds)
	fmt.Fprintln(out, "}, \"types\": {")
	types := map[string]string{}
	for n, t := range w.types {
		b, err := json.Marshal(t)
		if err != nil {
			panic(err)
		}
		types[n] = string(b)
	}
	writeRaw(out, types)
	fmt.Fprintln(out, "}}")
}

func writeSorted(out *os.File, m map[string]string) {
	raw := map[string]string{}
	for k, v := range m {
		b, _ := json.Marshal(v)
		raw[k] = string(b)
	}
	writeRaw(out, raw)
}

// One entry per line, sorted, so a regenerated file diffs by type.
func writeRaw(out *os.File, m map[string]string) {
	keys := sets.List(sets.KeySet(m))
	sort.Strings(keys)
	for i, k := range keys {
		kb, _ := json.Marshal(k)
		sep := ","
		if i == len(keys)-1 {
			sep = ""
		}
		fmt.Fprintf(out, "%s: %s%s\n", kb, m[k], sep)
	}
}
