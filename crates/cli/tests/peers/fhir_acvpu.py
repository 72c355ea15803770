"""Build FHIR R4 consciousness Observations with fhir.resources, POST them.

Usage: fhir_acvpu.py URL PATIENT EFFECTIVE LETTER...
Posts a Bundle with one Observation per LETTER (A, C, V, P or U): LOINC
67775-7 "Level of responsiveness" with valueCodeableConcept holding the LOINC
answer code for that level, shaped like the vital-signs examples of FHIR R4
(category vital-signs, subject, effectiveDateTime), plus one whose answer is
coded in another system (refused). Prints "<status> <response body>".
"""
import os
import sys
import urllib.error
import urllib.request

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.observation import Observation

LOINC = "http://loinc.org"
# The answer codes medmesh accepts (README, "Devices").
ANSWERS = {
    "A": ("LA9340-6", "Alert"),
    "C": ("LA6560-2", "Confused"),
    "V": ("LA17108-4", "Verbal"),
    "P": ("LA17107-6", "Painful"),
    "U": ("LA9343-0", "Unresponsive"),
}


def consciousness(patient, effective, coding):
    return Observation.model_validate({
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "vital-signs", "display": "Vital Signs"}]}],
        "code": {"coding": [{"system": LOINC, "code": "67775-7",
                             "display": "Level of responsiveness"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": effective,
        "valueCodeableConcept": {"coding": [coding]},
    })


url, patient, effective, *letters = sys.argv[1:]
entries = []
for letter in letters:
    code, display = ANSWERS[letter]
    entries.append({"resource": consciousness(
        patient, effective, {"system": LOINC, "code": code, "display": display})})
entries.append({"resource": consciousness(
    patient, effective, {"system": "http://example.org/avpu", "code": "V"})})
bundle = Bundle.model_validate({"resourceType": "Bundle", "type": "collection", "entry": entries})

request = urllib.request.Request(
    url, data=bundle.model_dump_json().encode(), headers={
        "Content-Type": "application/fhir+json",
        "Authorization": "Bearer " + os.environ["MEDMESH_TOKEN"],
    }
)
try:
    with urllib.request.urlopen(request) as response:
        print(response.status, response.read().decode())
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode())
