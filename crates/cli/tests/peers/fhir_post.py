"""Build FHIR R4 resources with fhir.resources (validated models), POST them.

Usage: fhir_post.py URL
Posts a Bundle of: a heart rate for Patient/f1 (from device Device/watch-7),
a blood-pressure panel for Patient/f1 and a heart rate for the unknown
Patient/nobody. Prints "<status> <response body>".
"""
import sys
import urllib.error
import os
import urllib.request

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.observation import Observation

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"


def quantity(value, code):
    return {"value": value, "unit": code, "system": UCUM, "code": code}


def heart_rate(patient, value, time):
    return Observation.model_validate({
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": LOINC, "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "device": {"reference": "Device/watch-7"},
        "effectiveDateTime": time,
        "valueQuantity": quantity(value, "/min"),
    })


blood_pressure = Observation.model_validate({
    "resourceType": "Observation",
    "status": "final",
    "code": {"coding": [{"system": LOINC, "code": "85354-9", "display": "Blood pressure panel"}]},
    "subject": {"reference": "Patient/f1"},
    "effectiveDateTime": "2026-11-25T08:31:00+01:00",
    "component": [
        {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]}, "valueQuantity": quantity(131, "mm[Hg]")},
        {"code": {"coding": [{"system": LOINC, "code": "8462-4"}]}, "valueQuantity": quantity(85, "mm[Hg]")},
    ],
})

bundle = Bundle.model_validate({
    "resourceType": "Bundle",
    "type": "collection",
    "entry": [
        {"resource": heart_rate("f1", 58, "2026-11-25T08:30:00Z")},
        {"resource": blood_pressure},
        {"resource": heart_rate("nobody", 60, "2026-11-25T08:30:00Z")},
    ],
})

request = urllib.request.Request(
    sys.argv[1], data=bundle.model_dump_json().encode(), headers={
        "Content-Type": "application/fhir+json",
        # The sender is an integration with an API token (MEDMESH_TOKEN).
        "Authorization": "Bearer " + os.environ["MEDMESH_TOKEN"],
    }
)
try:
    with urllib.request.urlopen(request) as response:
        print(response.status, response.read().decode())
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode())
